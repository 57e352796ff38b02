"""SIGTERM: readiness goes false, requests already received finish, then the process exits 0."""

from __future__ import annotations

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import servekit

BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def queued(server: servekit.Server) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith("modelserve_queue_depth{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def post(url: str) -> int:
    return httpx.post(f"{url}/v2/models/mlp/infer", json=BODY, timeout=20).status_code


def test_sigterm_finishes_requests_in_flight(model_dir: Path, log_dir: Path) -> None:
    # A long batching window holds the requests in the queue when SIGTERM arrives.
    server = servekit.start(
        model_dir / "mlp.onnx", "--batching", "true", "--max-delay-ms", "2000",
        "--max-batch-size", "64", "--drain-grace", "0.5", log_dir=log_dir,
    )  # fmt: skip
    with ThreadPoolExecutor(9) as pool:
        in_flight = [pool.submit(post, server.url) for _ in range(8)]
        deadline = time.monotonic() + 10
        while queued(server) < 8:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        # During the grace period: not Ready, yet new requests are still served.
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 503
        late = pool.submit(post, server.url)
        codes = [f.result() for f in in_flight]
        assert late.result() == 200
    assert codes == [200] * 8
    assert server.process.wait(20) == 0
    # The drain flushed the held batch instead of waiting out the 2 s window.
    assert time.monotonic() - started < 1.9
    assert "draining" in server.logs()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/v2/health/live", timeout=1)


def test_sigterm_closes_idle_keepalive_and_exits_fast(model_dir: Path, log_dir: Path) -> None:
    server = servekit.start(model_dir / "mlp.onnx", log_dir=log_dir)
    with server.client() as client:
        assert client.post("/v2/models/mlp/infer", json=BODY).status_code == 200
        started = time.monotonic()
        assert server.stop() == 0  # the idle keep-alive connection does not hold the drain
    assert time.monotonic() - started < 5


def test_sigterm_answers_pipelined_requests_before_closing(model_dir: Path, log_dir: Path) -> None:
    """Two requests pipelined on one connection, SIGTERM while the first is held: both are
    answered, and only the last answer says `connection: close`."""
    server = servekit.start(
        model_dir / "mlp.onnx", "--batching", "true", "--max-delay-ms", "1000",
        "--drain-grace", "0.2", log_dir=log_dir,
    )  # fmt: skip
    body = httpx.Request("POST", "http://x/v2/models/mlp/infer", json=BODY).read()
    one = (b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(one + one)
        deadline = time.monotonic() + 10
        while queued(server) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        server.process.send_signal(signal.SIGTERM)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert server.process.wait(20) == 0
    assert answer.count(b"HTTP/1.1 200 OK") == 2, answer
    assert answer.count(b"connection: close") == 1
    assert answer.rstrip().endswith(b"}")  # the second answer is complete
