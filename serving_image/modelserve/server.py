"""A lean HTTP/1.1 server: asyncio protocol + httptools parser, no framework in between.

Why not ASGI: at the request rates this image targets on one core, the per-request cost of an
ASGI stack (scope dicts, receive/send coroutines, a task per request, middleware layers) is
larger than the model's own time on small models. Here a request is parsed by httptools (the
parser uvicorn uses), handed to one handler function, and answered with a single
`transport.write`; inference results arrive through a plain callback, not a task or future.

What it still does properly: keep-alive and pipelining (answered in order), `Expect:
100-continue`, body limits enforced while reading (413 before the body is buffered), idle and
slow-request timeouts, write back-pressure, and a drain that finishes every request already
received before closing.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from typing import Final, cast

import httptools
import orjson

from .errors import BadRequestError, HeadersTooLargeError, PayloadTooLargeError, ServeError
from .tls import tls_context

log = logging.getLogger("modelserve.server")

MAX_HEADERS: Final = 100
MAX_HEADER_BYTES: Final = 64 * 1024
MAX_PIPELINED: Final = 32
DISCARD_SECONDS: Final = 2.0
_STATUS_LINES: Final = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


@dataclass(slots=True)
class Request:
    """One parsed HTTP request; `tag` lets the app label it for metrics and logs."""

    method: str
    path: str
    query: bytes
    headers: dict[bytes, bytes]
    body: bytes
    client: str
    received: float
    keep_alive: bool
    tag: str | None = None


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
ResponseHook = Callable[[Request, Response, float], None]


def error_response(exc: ServeError) -> Response:
    """The one place a domain error becomes an HTTP answer: `{"error": message}`."""
    return Response(exc.status, orjson.dumps({"error": exc.message}), headers=exc.headers())


def internal_error() -> Response:
    """A 500 that leaks nothing; the traceback goes to the log."""
    return Response(500, b'{"error":"internal server error"}')


class ServerState:
    """What every connection shares: the handler, limits, and the set of open connections."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_body_bytes: int,
        keepalive_timeout: float,
        request_timeout: float,
        on_response: ResponseHook | None = None,
    ) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.keepalive_timeout = keepalive_timeout
        self.request_timeout = request_timeout
        self.on_response = on_response
        self.connections: set[HttpProtocol] = set()
        self.draining = False

    @property
    def busy(self) -> int:
        """Connections with a request received (or being received) and not yet answered."""
        return sum(1 for conn in self.connections if conn.busy)

    def sweep(self) -> None:
        """Close idle keep-alive connections and answer 408 to requests that stall."""
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check_timeouts(now)

    def close_idle(self) -> None:
        """During a drain: close every connection with nothing in progress."""
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._client = "-"
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._reading = False  # a message has begun and is not complete
        self._in_head = False  # ... and its request line and headers are not complete yet
        self._head_bytes = 0  # bytes received while in the head
        self._messages = 0  # messages begun on this connection
        self._discarding = False  # a 413 went out; drop the rest of the body, then close
        self._started = 0.0
        self._last_activity = time.monotonic()
        self._queue: deque[Request] = deque()
        self._current: Request | None = None
        self._closed = False
        self._paused_reading = False

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self._client = f"{peer[0]}:{peer[1]}"
        self._state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - asyncio's signature
        self._closed = True
        self._state.connections.discard(self)
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        if self._discarding:
            return
        counting = self._in_head
        messages = self._messages
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            # A callback's own exception arrives wrapped, as the error's context.
            cause = exc.__context__
            if isinstance(cause, ServeError):
                self._reject(cause)
            else:
                self._fail(400, f"malformed HTTP request: {cause or exc}")
            return
        # httptools buffers a request line or header value until it ends, so an endless one
        # would grow without bound (and quadratically in time) before any callback could object.
        # Only a read that began inside this same head counts: one that also finished a
        # pipelined request carried that request's body, which is not head.
        if counting and self._in_head and self._messages == messages:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                limit = f"request line and headers exceed {MAX_HEADER_BYTES} bytes"
                self._reject(HeadersTooLargeError(limit))

    def pause_writing(self) -> None:
        self._set_reading(False)

    def resume_writing(self) -> None:
        self._set_reading(True)

    # --- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._header_bytes = 0
        self._body = []
        self._body_size = 0
        self._reading = True
        self._in_head = True
        self._head_bytes = 0
        self._messages += 1
        self._started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise HeadersTooLargeError(f"request line exceeds {MAX_HEADER_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise HeadersTooLargeError(f"request line and headers exceed {MAX_HEADER_BYTES} bytes")
        if len(self._headers) >= MAX_HEADERS:
            raise BadRequestError(f"more than {MAX_HEADERS} headers")
        key = name.lower()
        previous = self._headers.get(key)
        self._headers[key] = value if previous is None else previous + b", " + value

    def on_headers_complete(self) -> None:
        self._in_head = False
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._state.max_body_bytes:
            raise self._too_large()
        if self._headers.get(b"expect", b"").lower() == b"100-continue" and self._transport:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._state.max_body_bytes:
            raise self._too_large()
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._reading = False
        url = httptools.parse_url(self._url)
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(
            method=self._parser.get_method().decode(),
            path=url.path.decode("utf-8", "replace"),
            query=url.query or b"",
            headers=self._headers,
            body=body,
            client=self._client,
            received=time.perf_counter(),
            keep_alive=self._parser.should_keep_alive(),
        )
        self._body = []
        if self._current is not None:
            self._queue.append(request)  # pipelined: answered in order
            if len(self._queue) >= MAX_PIPELINED:
                self._set_reading(False)
            return
        self._dispatch(request)

    # --- handling ---------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A request is being received, processed or waiting behind another on this connection."""
        return self._reading or self._current is not None or bool(self._queue)

    def _too_large(self) -> ServeError:
        return PayloadTooLargeError(
            f"request body exceeds the limit of {self._state.max_body_bytes} bytes"
        )

    def _dispatch(self, request: Request) -> None:
        self._current = request
        try:
            outcome = self._state.handler(request, partial(self._respond, request))
        except ServeError as exc:
            outcome = error_response(exc)
        except Exception:
            log.exception("handler failed on %s %s", request.method, request.path)
            outcome = internal_error()
        if outcome is not None:
            self._respond(request, outcome)

    def _respond(self, request: Request, response: Response) -> None:
        # While draining, requests already pipelined behind this one are still answered; the
        # connection closes after the last of them.
        keep_alive = request.keep_alive and (not self._state.draining or bool(self._queue))
        if self._closed or self._transport is None:
            keep_alive = False
        else:
            head = [
                _STATUS_LINES.get(response.status)
                or f"HTTP/1.1 {response.status} Unknown\r\n".encode(),
                b"content-type: ",
                response.content_type,
                b"\r\ncontent-length: ",
                str(len(response.body)).encode(),
                b"\r\n",
            ]
            for name, value in response.headers:
                head += [name, b": ", value, b"\r\n"]
            head.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
            head.append(response.body)
            self._transport.write(b"".join(head))
            self._last_activity = time.monotonic()
        hook = self._state.on_response
        if hook is not None:
            hook(request, response, time.perf_counter() - request.received)
        self._current = None
        if not keep_alive:
            self.close()
            return
        if self._queue:
            self._dispatch(self._queue.popleft())
            if len(self._queue) < MAX_PIPELINED:
                self._set_reading(True)

    def _reject(self, exc: ServeError) -> None:
        """Answer before the body is read (413), then drop what is still coming and close.

        Reading on for a moment, instead of closing at once, lets the client finish sending and
        read the answer rather than seeing its upload reset.
        """
        self._reading = False
        self._discarding = True
        request = Request("-", self._url.decode("latin-1"), b"", self._headers, b"",
                          self._client, time.perf_counter(), False)  # fmt: skip
        self._respond_raw(request, error_response(exc))
        loop = asyncio.get_running_loop()
        loop.call_later(DISCARD_SECONDS, self.close)

    def _fail(self, status: int, message: str) -> None:
        self._reading = False
        request = Request("-", "-", b"", {}, b"", self._client, time.perf_counter(), False)
        self._respond(request, Response(status, orjson.dumps({"error": message})))

    def _respond_raw(self, request: Request, response: Response) -> None:
        if self._transport is not None and not self._closed:
            self._transport.write(
                b"".join([
                    _STATUS_LINES[response.status],
                    b"content-type: application/json\r\ncontent-length: ",
                    str(len(response.body)).encode(),
                    b"\r\nconnection: close\r\n\r\n",
                    response.body,
                ])
            )  # fmt: skip
        hook = self._state.on_response
        if hook is not None:
            hook(request, response, 0.0)

    def _set_reading(self, on: bool) -> None:
        if self._transport is None or self._closed or on != self._paused_reading:
            return
        if on:
            self._transport.resume_reading()
        else:
            self._transport.pause_reading()
        self._paused_reading = not on

    def check_timeouts(self, now: float) -> None:
        """Called by the server's sweep once a second."""
        if self._closed:
            return
        if (
            self._reading
            and self._state.request_timeout
            and (now - self._started > self._state.request_timeout)
        ):
            self._fail(408, "the request took too long to arrive")
        elif not self.busy and now - self._last_activity > self._state.keepalive_timeout:
            self.close()

    def close(self) -> None:
        """Close after what is buffered has been written."""
        if not self._closed and self._transport is not None:
            self._closed = True
            self._transport.close()


async def serve(
    state: ServerState,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
) -> asyncio.Server:
    """Listen, and sweep idle connections once a second while the server lives."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpProtocol(state),
        host=host,
        port=port,
        ssl=ssl_context,
        backlog=2048,
        reuse_address=True,
    )

    def sweep() -> None:
        state.sweep()
        if server.is_serving() or state.connections:
            loop.call_later(1.0, sweep)

    loop.call_later(1.0, sweep)
    return server


__all__ = [
    "Request",
    "Response",
    "ServerState",
    "error_response",
    "internal_error",
    "serve",
    "tls_context",
]
