"""A lean HTTP/1.1 server: asyncio protocol + httptools parser, no framework in between.

Why not ASGI: at the request rates this image targets on one core, the per-request cost of an
ASGI stack (scope dicts, receive/send coroutines, a task per request, middleware layers) is
larger than the model's own time on small models. Here a request is parsed by httptools (the
parser uvicorn uses), handed to one handler function, and answered with a single
`transport.write`; inference results arrive through a plain callback, not a task or future.

What it still does properly:
- keep-alive and pipelining, answered in request order, refusals included (a 413 for the third
  request waits for the first two answers);
- checks at the request head, before a body is buffered: credentials (through the app's head
  check), the body limit (413), and room in the server-wide budget of buffered body bytes (503);
  `100 Continue` only once those pass;
- a connection cap with a clear 503, so a flood of idle connections cannot exhaust descriptors;
- idle and slow-request timeouts, write back-pressure;
- `Upgrade` requests (`curl --http2` sends `Upgrade: h2c`) answered as plain HTTP/1.1, which
  RFC 9110 allows a server to do;
- a closed connection's buffers freed at once: the protocol and its parser refer to each other,
  so the connection breaks that cycle itself rather than leave its buffers to a full GC;
- a drain that answers every request already received, and past its deadline answers the rest
  503 instead of dropping them. An answer the client hung up before receiving is recorded as
  499, never as what it would have been.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import time
from collections import deque
from functools import partial
from typing import Final, cast

import httptools

from .errors import (
    BadRequestError,
    HeadersTooLargeError,
    PayloadTooLargeError,
    ServeError,
    UnavailableError,
)
from .messages import (
    CLIENT_CLOSED,
    Handler,
    HeadCheck,
    Request,
    Respond,
    Response,
    ResponseHook,
    encode,
    error_response,
    internal_error,
)
from .tls import tls_context

log = logging.getLogger("modelserve.server")

MAX_HEADERS: Final = 100
MAX_HEADER_BYTES: Final = 64 * 1024
MAX_PIPELINED: Final = 32
# After a refusal, read and drop what the client is still sending this long before closing, so
# it gets to read the answer instead of a connection reset.
DISCARD_SECONDS: Final = 2.0
REFUSAL_LOG_SECONDS: Final = 10.0
# At the connection cap, a connection silent this long since it opened is closed to make room.
SILENT_SECONDS: Final = 1.0
# When the buffer budget is short, an upload that has held room this long while arriving slower
# than MIN_UPLOAD_RATE (bytes per second since its head began) gives the room back (408).
RECLAIM_AFTER_SECONDS: Final = 1.0
MIN_UPLOAD_RATE: Final = 64 * 1024
_TOO_SLOW: Final = Response(
    408,
    b'{"error":"the request body arrived too slowly (under 64 KiB/s) while the server needed '
    b'the buffer room it held; retry"}',
)
_HOP_BY_HOP_UPGRADE: Final = (b"upgrade", b"http2-settings")
_QUESTION_MARK: Final = ord("?")
_HASH: Final = ord("#")


class _Closed:
    """What a closed connection's parser reports to: nothing (see HttpProtocol.connection_lost)."""


# Shared by every closed connection: it keeps no reference to any of them.
_CLOSED_PARSER: Final = httptools.HttpRequestParser(_Closed())
_GONE: Final = Response(CLIENT_CLOSED, b"")


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
        on_head: HeadCheck | None = None,
        max_connections: int = 0,
        max_buffered_bytes: int = 0,
    ) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.keepalive_timeout = keepalive_timeout
        self.request_timeout = request_timeout
        self.on_response = on_response
        self.on_head = on_head
        self.max_connections = max_connections
        self.max_buffered_bytes = max_buffered_bytes
        self.buffered = 0  # body bytes held by every connection together
        self.connections: set[HttpProtocol] = set()
        self.refused: set[HttpProtocol] = set()  # over the cap, answered 503, closing
        self.draining = False
        self._refused_unlogged = 0
        self._refusal_logged = -REFUSAL_LOG_SECONDS

    @property
    def busy(self) -> int:
        """Connections with a request received (or being received) and not yet answered."""
        return sum(1 for conn in self.connections if conn.busy)

    def reserve(self, size: int) -> bool:
        """Take `size` bytes of the buffered-body budget; False when they do not fit, even
        after reclaiming the room of stalled uploads."""
        if self.max_buffered_bytes and self.buffered + size > self.max_buffered_bytes:
            self._reclaim(size)
            if self.buffered + size > self.max_buffered_bytes:
                return False
        self.buffered += size
        return True

    def _reclaim(self, size: int) -> None:
        """Answer 408 to uploads that hold room by their Content-Length but send too slowly,
        slowest first, until `size` fits: a head declaring 16 MB and then a byte a minute must
        not keep the room from requests that would arrive at once."""
        now = time.monotonic()
        slow = [(conn.upload_rate(now), conn) for conn in self.connections]
        for _, conn in sorted(
            ((rate, conn) for rate, conn in slow if rate is not None), key=lambda pair: pair[0]
        ):
            conn.give_room_back()
            if self.buffered + size <= self.max_buffered_bytes:
                return

    def refusing(self, client: str) -> bool:
        """Whether a new connection is over the cap; logs refusals, at most every 10 s.

        At the cap, a connection that has not sent a byte for `SILENT_SECONDS` since it opened
        makes room instead (the oldest such): a client opens a connection to send a request
        at once, so a silent one is a slowloris holding a slot, and with the keep-alive timeout
        alone a flood of them would refuse every real client for that long."""
        if not self.max_connections or len(self.connections) < self.max_connections:
            return False
        silent = min(self.connections, key=HttpProtocol.silence_order)
        if silent.silent_for(time.monotonic()) >= SILENT_SECONDS:
            self.connections.discard(silent)
            silent.close()
            return False
        self._refused_unlogged += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_SECONDS:
            log.warning(
                "refused %d connection(s), the last from %s: %d open is the --max-connections "
                "limit",
                self._refused_unlogged,
                client,
                len(self.connections),
            )
            self._refused_unlogged = 0
            self._refusal_logged = now
        return True

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

    def abandon(self) -> int:
        """Past the drain deadline: answer 503 to every request still in progress and close
        its connection. Returns how many requests were answered that way."""
        return sum(conn.abandon() for conn in list(self.connections))


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._client = "-"
        # The message being read.
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._request: Request | None = None  # built once its head is complete
        self._body: list[bytes] = []
        self._body_size = 0
        self._declared = False  # its size was reserved from its Content-Length
        self._upgrade = False  # it asked for a protocol upgrade, which is being ignored
        self._continue = False  # it expects `100 Continue`, owed once earlier answers are out
        self._reading = False  # a message has begun and is not complete
        self._in_head = False  # ... and its request line and headers are not complete yet
        self._head_bytes = 0  # bytes received while in the head
        self._messages = 0  # messages begun on this connection
        self._started = 0.0
        # Requests received, answered in order: `_current` is with the handler, the queue
        # waits behind it (an entry with a Response is a refusal, written in its turn).
        self._current: Request | None = None
        self._queue: deque[tuple[Request, Response | None]] = deque()
        self._held = 0  # body bytes this connection holds in the server's budget
        self._message_held = 0  # ... of which for the message being read
        self._stopped = False  # refused: read nothing more; the last answer ends it
        self._linger = True  # ... and read on a moment before closing (see _refuse)
        self._last_activity = time.monotonic()
        self._bytes_seen = False  # silent since it opened (see ServerState.refusing)
        self._closed = False
        self._paused_reading = False

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self._client = f"{peer[0]}:{peer[1]}"
        state = self._state
        if state.refusing(self._client):
            linger = len(state.refused) < state.max_connections
            if linger:
                state.refused.add(self)
            limit = state.max_connections
            message = f"too many connections (the limit is {limit}), retry shortly"
            self._refuse(error_response(UnavailableError(message, retry_after=1)), linger=linger)
            return
        state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - asyncio's signature
        self._closed = True
        state = self._state
        state.connections.discard(self)
        state.refused.discard(self)
        self._release(self._held)
        for request, response in list(self._queue):  # received, never answered
            self._write(request, response or _GONE, keep_alive=False)
        # Drop every buffer now, and the parser with them: it refers back to this protocol, a
        # cycle only a full GC would collect, and until then a half-received body stays.
        self._parser = _CLOSED_PARSER
        self._queue.clear()
        self._body = []
        self._headers = {}
        self._request = None
        self._transport = None
        # `_current` stays: its answer, when it comes, is recorded as undelivered (499).

    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        self._bytes_seen = True
        if self._stopped:
            return
        counting = self._in_head
        messages = self._messages
        while True:
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                # Answer in HTTP/1.1: parse the request again from a head without the upgrade,
                # followed by what came after it (its body, then any pipelined request).
                data = self._head_without_upgrade() + data[exc.args[0] :]
                continue
            except httptools.HttpParserError as exc:
                # A callback's own exception arrives wrapped, as the error's context.
                cause = exc.__context__
                if not isinstance(cause, ServeError):
                    cause = BadRequestError(f"malformed HTTP request: {cause or exc}")
                self._refuse(error_response(cause))
                return
            break
        # httptools buffers a request line or header value until it ends, so an endless one
        # would grow without bound (and quadratically in time) before any callback could object.
        # Only a read that began inside this same head counts: one that also finished a
        # pipelined request carried that request's body, which is not head.
        if counting and self._in_head and self._messages == messages:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                limit = f"request line and headers exceed {MAX_HEADER_BYTES} bytes"
                self._refuse(error_response(HeadersTooLargeError(limit)))

    def pause_writing(self) -> None:
        self._set_reading(False)

    def resume_writing(self) -> None:
        self._set_reading(True)

    # --- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._header_bytes = 0
        self._request = None
        self._body = []
        self._body_size = 0
        self._message_held = 0
        self._declared = False
        self._upgrade = False
        self._continue = False
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
        parser = self._parser
        if parser.should_upgrade():
            if parser.get_method() == b"CONNECT":
                raise BadRequestError("CONNECT is not supported: this server is not a proxy")
            self._upgrade = True  # data_received parses it again, without the upgrade
            return
        raw = self._url
        # Byte values, not b"?": `bytes in bytes` first tries the operand as an integer, and
        # the TypeError it formats and drops costs more than the search.
        if raw[:1] == b"/" and _QUESTION_MARK not in raw and _HASH not in raw:
            path, query = raw.decode("utf-8", "replace"), b""  # the usual origin-form target
        else:
            url = httptools.parse_url(raw)
            path, query = url.path.decode("utf-8", "replace"), url.query or b""
        request = Request(
            parser.get_method().decode(), path, query, self._headers, b"", self._client, 0.0,
            parser.should_keep_alive(),
        )  # fmt: skip
        self._request = request
        state = self._state
        if state.on_head is not None:
            state.on_head(request)  # credentials, before any of the body is read
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit():
            size = int(length)
            if size > state.max_body_bytes:
                raise self._too_large()
            budget = state.max_buffered_bytes
            if budget and state.buffered + size > budget:
                self._hold(size)  # may reclaim a stalled upload's room, or refuse (503)
            else:  # the common case, inline: it runs for every request
                state.buffered += size
                self._held += size
                self._message_held += size
            self._declared = True
        if self._headers.get(b"expect", b"").lower() == b"100-continue":
            if self._current is None:
                self._write_continue()
            else:
                self._continue = True  # after the answers before it, or it would precede them

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._state.max_body_bytes:
            raise self._too_large()
        if not self._declared:  # chunked: held as it arrives
            self._hold(len(body))
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._upgrade:
            return
        request = self._request
        assert request is not None  # built by on_headers_complete
        self._reading = False
        self._continue = False
        request.body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request.received = time.perf_counter()
        self._body = []
        self._request = None
        self._message_held = 0  # held by the request now, until it is answered
        if self._current is not None:
            self._queue.append((request, None))  # pipelined: answered in order
            if len(self._queue) >= MAX_PIPELINED:
                self._set_reading(False)
            return
        self._dispatch(request)

    # --- handling ---------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A request is being received, processed or waiting behind another on this connection."""
        return self._reading or self._current is not None or bool(self._queue)

    def upload_rate(self, now: float) -> float | None:
        """Bytes per second of the body being received, when it holds buffer room and has
        arrived slower than MIN_UPLOAD_RATE for over RECLAIM_AFTER_SECONDS; else None."""
        if not self._reading or self._in_head or self._stopped or not self._message_held:
            return None
        elapsed = now - self._started
        if elapsed < RECLAIM_AFTER_SECONDS:
            return None
        rate = self._body_size / elapsed
        return rate if rate < MIN_UPLOAD_RATE else None

    def give_room_back(self) -> None:
        """Refuse the slow upload (408), which releases the room it held."""
        self._refuse(_TOO_SLOW)

    def silent_for(self, now: float) -> float:
        """Seconds since it opened, if it has not sent a byte yet; else 0."""
        if self._closed or self._messages or self._bytes_seen:
            return 0.0
        return now - self._last_activity

    def silence_order(self) -> float:
        """Sort key: the connection silent since it opened the longest comes first."""
        return self._last_activity if self.silent_for(time.monotonic()) else float("inf")

    def _too_large(self) -> ServeError:
        return PayloadTooLargeError(
            f"request body exceeds the limit of {self._state.max_body_bytes} bytes"
        )

    def _hold(self, size: int) -> None:
        if not self._state.reserve(size):
            raise UnavailableError(
                "the server holds too many buffered request bytes right now "
                f"(--max-buffered-bytes {self._state.max_buffered_bytes}), retry shortly",
                retry_after=1,
            )
        self._held += size
        self._message_held += size

    def _release(self, size: int) -> None:
        size = min(size, self._held)
        self._held -= size
        self._state.buffered -= size

    def _head_without_upgrade(self) -> bytes:
        """The current request's head again, minus the upgrade it asked for."""
        parser = self._parser
        version = parser.get_http_version().encode()
        lines = [parser.get_method() + b" " + self._url + b" HTTP/" + version]
        for name, value in self._headers.items():
            if name in _HOP_BY_HOP_UPGRADE:
                continue
            if name == b"connection":
                tokens = [t.strip() for t in value.split(b",")]
                kept = [t for t in tokens if t and t.lower() not in _HOP_BY_HOP_UPGRADE]
                if not kept:
                    continue
                value = b", ".join(kept)
            lines.append(name + b": " + value)
        self._parser = httptools.HttpRequestParser(self)
        return b"\r\n".join(lines) + b"\r\n\r\n"

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
        """Answer the request being handled, then start on the next one received."""
        if request is not self._current:
            return  # answered already: the drain deadline passed and it got a 503
        # While draining, requests already pipelined behind this one are still answered; the
        # connection closes after the last of them. A refusal is always a connection's last.
        keep_alive = (
            request.keep_alive
            and not request.early
            and not self._closed
            and (not self._state.draining or bool(self._queue))
        )
        self._write(request, response, keep_alive=keep_alive)
        self._current = None
        if not keep_alive:
            self._end()
            return
        if self._queue:
            queued, refusal = self._queue.popleft()
            if refusal is not None:
                self._current = queued
                self._respond(queued, refusal)
            else:
                self._dispatch(queued)
            if len(self._queue) < MAX_PIPELINED:
                self._set_reading(True)
        elif self._continue and self._reading:
            self._continue = False
            self._write_continue()

    def _write(self, request: Request, response: Response, *, keep_alive: bool) -> None:
        """Write one answer, free its body's share of the budget, and record what was sent."""
        transport = self._transport
        delivered = not self._closed and transport is not None
        if delivered:
            assert transport is not None
            transport.write(encode(response, keep_alive=keep_alive))
            self._last_activity = time.monotonic()
        size = len(request.body)
        if size:  # _release, inline: it runs for every answer
            size = min(size, self._held)
            self._held -= size
            self._state.buffered -= size
        hook = self._state.on_response
        if hook is not None:
            sent = response if delivered else Response(CLIENT_CLOSED, b"")
            seconds = 0.0 if request.early else time.perf_counter() - request.received
            hook(request, sent, seconds)

    def _write_continue(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _refuse(self, response: Response, *, linger: bool = True) -> None:
        """Answer the message being read with an error, in its turn after the answers still
        owed on this connection, and read nothing more. Reading on (and dropping) for a moment
        after the answer, instead of closing at once, lets a client still sending its body read
        the answer rather than see its upload reset."""
        request = self._request
        if request is None:  # refused before its head was complete
            path = self._url.split(b"?", 1)[0].decode("utf-8", "replace") or "-"
            request = Request("-", path, b"", self._headers, b"", self._client, 0.0, False)
        request.early = True
        self._release(self._message_held)
        self._message_held = 0
        self._reading = False
        self._continue = False
        self._stopped = True
        self._linger = linger
        self._body = []
        self._request = None
        if self._current is None:
            self._current = request
            self._respond(request, response)
        else:
            self._queue.append((request, response))

    def _owed(self) -> list[tuple[Request, Response | None]]:
        """Requests received in full and not answered yet, in order."""
        current = [(self._current, None)] if self._current is not None else []
        return [*current, *self._queue]

    def _end(self) -> None:
        """After the connection's last answer: close, or linger first after a refusal."""
        if self._stopped and self._linger and not self._closed:
            asyncio.get_running_loop().call_later(DISCARD_SECONDS, self.close)
        else:
            self.close()

    def abandon(self) -> int:
        """Answer 503 to each request in progress on this connection, in order, and close."""
        shutting = error_response(
            UnavailableError("the server is shutting down, retry", retry_after=1)
        )
        owed = [(request, refusal or shutting) for request, refusal in self._owed()]
        if self._reading and self._request is not None:  # its head is in: it is a request
            self._request.early = True
            owed.append((self._request, shutting))
        self._queue.clear()
        self._current = None
        self._reading = False
        self._stopped = True
        for index, (request, response) in enumerate(owed):
            self._write(request, response, keep_alive=index < len(owed) - 1)
        self.close()
        return len(owed)

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
            self._refuse(Response(408, b'{"error":"the request took too long to arrive"}'))
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
    "CLIENT_CLOSED",
    "Handler",
    "HeadCheck",
    "HttpProtocol",
    "Request",
    "Respond",
    "Response",
    "ResponseHook",
    "ServerState",
    "error_response",
    "fit_descriptor_limit",
    "internal_error",
    "serve",
    "tls_context",
]


def fit_descriptor_limit(max_connections: int) -> int:
    """The connection cap that fits the process's descriptor limit, raising the soft limit to
    the hard one when needed (as Go's runtime does): a pod's soft limit is often 1024.

    Each connection takes a descriptor, and as many refused connections may linger a moment;
    64 are kept for the model, logs and the listening socket.
    """
    needed = 2 * max_connections + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return max_connections
    fitted = max(1, (soft - 64) // 2)
    log.warning(
        "--max-connections %d lowered to %d: the descriptor limit is %d",
        max_connections,
        fitted,
        soft,
    )
    return fitted
