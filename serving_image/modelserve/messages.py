"""The HTTP messages the server and the app exchange, and the one place an answer is encoded.

Kept apart from the connection code so the app, the access log and the protocol adapters can
speak in requests and responses without importing the event-loop machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final

import orjson

from .errors import ServeError

# nginx's "client closed request": recorded (access log, requests_total) for an answer that was
# ready but could not be written because the client had hung up. Never sent on the wire.
CLIENT_CLOSED: Final = 499

_STATUS_LINES: Final = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


@dataclass(slots=True)
class Request:
    """One HTTP request.

    Built when its head is complete (the body is filled in when it has arrived), so the app can
    label it (`tag`, for metrics) and check its credentials before a byte of its body is
    buffered. `early` marks a request the HTTP layer refused before it was read in full (413,
    431, 408, a 401 at the head, a 503 for lack of room): it has no latency worth observing.
    """

    method: str
    path: str
    query: bytes
    headers: dict[bytes, bytes]
    body: bytes
    client: str
    received: float
    keep_alive: bool
    tag: str | None = None
    authenticated: bool = False
    early: bool = False


@dataclass(slots=True)
class Response:
    """What goes back: status, body, content type and any extra headers."""

    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


Respond = Callable[[Response], None]
# A handler answers now (returns a Response) or later (returns None and calls `respond` once,
# on the event loop). It may raise ServeError; the server turns it into the answer.
Handler = Callable[[Request, Respond], Response | None]
# Called with each request's head, before its body is read; may raise ServeError (a 401).
HeadCheck = Callable[[Request], None]
# Called once per request with what the client received (status 499: nothing) and the seconds
# from the request's last byte to the answer.
ResponseHook = Callable[[Request, Response, float], None]


def error_response(exc: ServeError) -> Response:
    """The one place a domain error becomes an HTTP answer: `{"error": message}`."""
    return Response(exc.status, orjson.dumps({"error": exc.message}), headers=exc.headers())


def internal_error() -> Response:
    """A 500 that leaks nothing; the traceback goes to the log."""
    return Response(500, b'{"error":"internal server error"}')


def encode(response: Response, *, keep_alive: bool) -> bytes:
    """Status line, headers and body in one buffer, for one `transport.write`."""
    status = (
        _STATUS_LINES.get(response.status)
        or f"HTTP/1.1 {response.status} Unknown\r\n".encode()
    )  # fmt: skip
    parts = [
        status,
        b"content-type: ",
        response.content_type,
        b"\r\ncontent-length: ",
        str(len(response.body)).encode(),
        b"\r\n",
    ]
    for name, value in response.headers:
        parts += [name, b": ", value, b"\r\n"]
    parts.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
    parts.append(response.body)
    return b"".join(parts)
