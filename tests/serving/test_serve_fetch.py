"""Model download over HTTP against a real server on loopback that misbehaves the way networks
and object stores do: bytes that trickle, bodies cut short, URIs that carry credentials."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import signal
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import servekit

USER, PASSWORD, SIGNATURE = "reader", "pa55w0rd-x", "s1gnature-y"


@dataclass
class Origin:
    """The test's model server: its URL, the bytes it serves, and what it was asked."""

    url: str
    body: bytes
    hits: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)


@pytest.fixture(scope="module")
def origin(model_dir: Path) -> Iterator[Origin]:
    """Paths: /trickle/* sends one byte every half second; /short/N/* cuts the first N bodies
    in half (Content-Length still says the whole); /private/* needs Basic credentials and the
    `sig` query parameter; anything else 404."""
    state = Origin(url="", body=(model_dir / "mlp.onnx").read_bytes())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            path = parts.path
            state.hits[path] += 1
            if path.startswith("/private/"):
                expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != f"Basic {expected}":
                    self.send_error(401)
                    return
                if urllib.parse.parse_qs(parts.query).get("sig") != [SIGNATURE]:
                    self.send_error(403)
                    return
                path = path[len("/private") :]
            if path == "/trickle/mlp.onnx":
                self._headers()
                for byte in state.body:
                    if state.stop.wait(0.5):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            elif path.startswith("/short/") and path.endswith("/mlp.onnx"):
                cut = int(path.split("/")[2])
                self._headers()
                short = state.hits[parts.path] <= cut
                self.wfile.write(state.body[: len(state.body) // 2] if short else state.body)
            else:
                self.send_error(404)

        def _headers(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield state
    state.stop.set()
    httpd.shutdown()


def exit_code(server: servekit.Server, timeout: float) -> int:
    """Wait for a server that must fail to start; it must never have been Ready."""
    deadline = time.monotonic() + timeout
    while server.process.poll() is None:
        if time.monotonic() > deadline:
            server.stop(signal.SIGKILL)
            raise AssertionError(f"still running after {timeout}s:\n{server.logs()}")
        with contextlib.suppress(httpx.TransportError):
            assert httpx.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 503
        time.sleep(0.05)
    return server.process.returncode


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_trickling_download_fails_after_the_timeout(
    origin: Origin, log_dir: Path, tmp_path: Path
) -> None:
    """A byte every half second never trips a per-read timeout: the pod stayed loading
    forever. Each attempt is now bounded as a whole, and the last failure is the error."""
    cache = tmp_path / "cache"
    started = time.monotonic()
    server = servekit.start(f"{origin.url}/trickle/mlp.onnx", "--download-timeout", "1.5",
                            "--download-retries", "1", "--model-dir", str(cache),
                            log_dir=log_dir, wait_ready=False)  # fmt: skip
    assert exit_code(server, timeout=20) == 1
    assert time.monotonic() - started < 12
    logs = server.logs()
    assert "did not finish within 1.5s" in logs
    assert "retrying model download" in logs
    assert files(cache) == []  # no partial file left behind


def test_a_short_body_is_retried(origin: Origin, log_dir: Path, tmp_path: Path) -> None:
    """Half the bytes Content-Length promised: a failed attempt, retried; it used to be kept as
    the model and refused as 'not a valid ONNX model'."""
    cache = tmp_path / "cache"
    digest = hashlib.sha256(origin.body).hexdigest()
    server = servekit.start(f"{origin.url}/short/1/mlp.onnx", "--sha256", digest,
                            "--model-dir", str(cache), log_dir=log_dir)  # fmt: skip
    try:
        assert httpx.get(f"{server.url}/v2/models/mlp/ready").status_code == 200
    finally:
        assert server.stop() == 0
    assert origin.hits["/short/1/mlp.onnx"] == 2
    half = len(origin.body) // 2
    assert f"the body ended after {half} of {len(origin.body)} bytes" in server.logs()
    assert [name.endswith(".onnx") for name in files(cache)] == [True]  # just the model


def test_a_body_that_is_always_short_fails_as_a_download(
    origin: Origin, log_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    server = servekit.start(f"{origin.url}/short/99/mlp.onnx", "--download-retries", "1",
                            "--model-dir", str(cache), log_dir=log_dir,
                            wait_ready=False)  # fmt: skip
    assert exit_code(server, timeout=20) == 1
    logs = server.logs()
    assert "cannot download the model" in logs
    assert "the body ended after" in logs
    assert "not a valid ONNX model" not in logs
    assert files(cache) == []


def test_credentials_and_signatures_never_reach_logs_or_metrics(
    origin: Origin, log_dir: Path, tmp_path: Path
) -> None:
    """userinfo is sent as Basic credentials and the query as-is, but neither is ever printed:
    not in the retry warning (the first body is cut short), not in the load line, not in the
    model_info metric, not in the error when the download fails."""
    secret = f"//{USER}:{PASSWORD}@127.0.0.1:{origin.url.rsplit(':', 1)[1]}"
    uri = f"http:{secret}/private/short/1/mlp.onnx?sig={SIGNATURE}&x=1"
    server = servekit.start(uri, "--model-dir", str(tmp_path / "cache"), log_dir=log_dir)
    try:
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        assert server.stop() == 0
    failing = servekit.start(uri.replace("mlp.onnx", "absent.onnx"), "--download-retries", "0",
                             log_dir=log_dir, wait_ready=False)  # fmt: skip
    assert exit_code(failing, timeout=20) == 1
    logs, failed = server.logs(), failing.logs()
    assert "retrying model download" in logs
    assert f"loaded from {origin.url}/private/short/1/mlp.onnx" in logs
    assert f"HTTP 404 from {origin.url}/private/short/1/absent.onnx" in failed
    for text in (logs, metrics, failed):
        assert PASSWORD not in text
        assert SIGNATURE not in text
        assert f"{USER}:" not in text
