"""Logging: text or JSON lines, and an access log that never records payloads.

The access log bypasses the `logging` module: one line per request is formatted directly and
written to a buffered stream flushed once a second (and at exit), which keeps its cost to a few
microseconds on the request path.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from .messages import Request, Response


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the traceback if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure(*, fmt: str, level: str, stream: IO[str] | None = None) -> None:
    """Route the server's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class AccessLog:
    """Method, path, status, sizes, latency, client and request id; never bodies or tokens."""

    def __init__(self, *, fmt: str, stream: IO[str] | None = None) -> None:
        self._json = fmt == "json"
        self._stream = stream or sys.stdout
        self._buffer: list[str] = []

    def record(self, request: Request, response: Response, seconds: float) -> None:
        """Format one line into the buffer."""
        request_id = request.headers.get(b"x-request-id", b"").decode("latin-1")[:128]
        if self._json:
            line = orjson.dumps(
                {
                    "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "type": "access",
                    "client": request.client,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "bytes_in": len(request.body),
                    "bytes_out": len(response.body),
                    "duration_ms": round(seconds * 1000, 3),
                    "request_id": request_id or None,
                }
            ).decode()
        else:
            line = (
                f'{request.client} "{request.method} {request.path}" {response.status} '
                f"in={len(request.body)} out={len(response.body)} {seconds * 1000:.3f}ms"
                + (f" id={request_id}" if request_id else "")
            )
        self._buffer.append(line)
        if len(self._buffer) >= 256:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered; called once a second and at shutdown."""
        if self._buffer:
            lines, self._buffer = self._buffer, []
            try:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed stdout must not take the server down
