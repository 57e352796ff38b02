"""A real HTTP receiver on loopback for webhook tests: it records every POST and answers as told.

Shared by tests/unit/test_webhook_calls.py and tests/integration/test_webhooks.py. `answers`
is a list of (status, delay seconds) consumed one per request, the last one repeated: a test
says "500 twice, then 200" or "hang for 30 s" without any mock of the network.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, *answers: tuple[int, float], location: str | None = None) -> None:
        self.answers = list(answers) or [(200, 0.0)]
        self.location = location
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with receiver._lock:
                    receiver.requests.append((self.path, dict(self.headers), body))
                    status, delay = (receiver.answers.pop(0) if len(receiver.answers) > 1
                                     else receiver.answers[0])  # fmt: skip
                receiver._stop.wait(delay)
                try:
                    self.send_response(status)
                    if receiver.location:
                        self.send_header("Location", receiver.location)
                    payload = f"answer {status}".encode()
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the caller gave up (its timeout): nothing to answer

            def log_message(self, *_: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[Any]:
        with self._lock:
            return [body for _, _, body in self.requests]

    def wait(self, count: int, timeout: float = 30) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= count:
                return self.bodies()
            time.sleep(0.05)
        raise AssertionError(f"{len(self.requests)} requests after {timeout}s, not {count}")
