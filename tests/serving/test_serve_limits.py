"""Protection: body size (413), concurrency (429), queue depth (503), NaN/Inf rejection."""

from __future__ import annotations

import gzip
import socket
import struct
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
import servekit

BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def gauge(server: servekit.Server, name: str) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(name)


def wait_for(server: servekit.Server, name: str, target: float, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while gauge(server, name) < target:
        assert time.monotonic() < deadline, f"{name} never reached {target}"
        time.sleep(0.01)


def post(server: servekit.Server) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/mlp/infer", json=BODY, timeout=10)


def test_body_limits(model_dir: Path, log_dir: Path) -> None:
    server = servekit.start(model_dir / "mlp.onnx", "--max-body-bytes", "1000", log_dir=log_dir)
    big = orjson.dumps({**BODY, "pad": "x" * 2000})
    try:
        with server.client() as client:
            declared = client.post("/v2/models/mlp/infer", content=big)
            chunked = client.post("/v2/models/mlp/infer", content=iter([big[:600], big[600:]]))
            bomb = client.post(
                "/v2/models/mlp/infer",
                content=gzip.compress(orjson.dumps({**BODY, "pad": " " * 100_000})),
                headers={"Content-Encoding": "gzip"},
            )
            fine = client.post("/v2/models/mlp/infer", json=BODY)
        # A large upload is answered before it is read, and the upload is not reset under it.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 50000000\r\n\r\n")  # fmt: skip
            early = sock.recv(4096)
    finally:
        server.stop()
    assert declared.status_code == 413
    assert declared.json()["error"] == "request body exceeds the limit of 1000 bytes"
    assert chunked.status_code == 413
    assert bomb.status_code == 413
    assert "decompressed body exceeds" in bomb.json()["error"]
    assert fine.status_code == 200
    assert early.startswith(b"HTTP/1.1 413 ")


def test_concurrency_limit_answers_429(model_dir: Path, log_dir: Path) -> None:
    server = servekit.start(
        model_dir / "mlp.onnx", "--batching", "true", "--max-concurrency", "2",
        "--max-delay-ms", "500", "--max-batch-size", "64", log_dir=log_dir,
    )  # fmt: skip
    try:
        with ThreadPoolExecutor(2) as pool:
            held: list[Future[httpx.Response]] = [pool.submit(post, server) for _ in range(2)]
            wait_for(server, "modelserve_inflight_requests", 2)
            refused = post(server)
            answers = [f.result() for f in held]
    finally:
        server.stop()
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert "more than 2 inference requests in flight" in refused.json()["error"]
    assert [a.status_code for a in answers] == [200, 200]


def test_full_queue_answers_503(model_dir: Path, log_dir: Path) -> None:
    server = servekit.start(
        model_dir / "mlp.onnx", "--batching", "true", "--max-queue", "3", "--max-delay-ms", "500",
        "--max-batch-size", "64", log_dir=log_dir,
    )  # fmt: skip
    try:
        with ThreadPoolExecutor(3) as pool:
            held = [pool.submit(post, server) for _ in range(3)]
            wait_for(server, "modelserve_queue_depth", 3)
            refused = post(server)
            answers = [f.result() for f in held]
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "the inference queue is full, retry shortly"
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert 'code="503"' in metrics


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_reject_nonfinite(model_dir: Path, log_dir: Path, bad: float) -> None:
    header = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 16}}]})  # fmt: skip
    payload = header + struct.pack("<4f", 1, bad, 3, 4)
    headers = {"Inference-Header-Content-Length": str(len(header))}
    strict = servekit.start(model_dir / "mlp.onnx", "--reject-nonfinite", "true",
                            log_dir=log_dir)  # fmt: skip
    try:
        refused = httpx.post(f"{strict.url}/v2/models/mlp/infer", content=payload,
                             headers=headers)  # fmt: skip
    finally:
        strict.stop()
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "input 'input': NaN or Inf values are not accepted by this model"
    )


def test_nonfinite_passes_when_allowed(mlp_server: servekit.Server) -> None:
    header = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 16}}]})  # fmt: skip
    response = httpx.post(
        f"{mlp_server.url}/v2/models/mlp/infer",
        content=header + struct.pack("<4f", 1, float("nan"), 3, 4),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200


def test_slow_request_gets_408(model_dir: Path, log_dir: Path) -> None:
    server = servekit.start(model_dir / "mlp.onnx", "--request-timeout", "0.5", log_dir=log_dir)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
            answer = sock.recv(4096)
    finally:
        server.stop()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout")


@pytest.mark.parametrize("head", [b"GET /v2/health/live", b"GET / HTTP/1.1\r\nX-Big: "])
def test_an_endless_request_line_or_header_gets_431(
    mlp_server: servekit.Server, head: bytes
) -> None:
    """The head is cut off at 64 KiB, not buffered until the request timeout (which let one
    connection grow the server's memory and stall every other client)."""
    with socket.create_connection(("127.0.0.1", mlp_server.port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        try:
            for _ in range(64):  # 2 MiB at most, in 32 KiB pieces
                sock.sendall(b"a" * 32768)
        except OSError:  # the server answered and closed while we were still sending
            pass
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"65536 bytes" in answer
    started = time.monotonic()
    assert httpx.get(f"{mlp_server.url}/v2/health/live", timeout=5).status_code == 200
    assert time.monotonic() - started < 1


def test_a_pipelined_request_whose_head_spans_reads_is_not_mistaken_for_a_long_head(
    mlp_server: servekit.Server,
) -> None:
    """Read 2 finishes request 1's head, carries its 100 kB body and starts request 2's head:
    only head bytes count towards the 64 KiB limit, so both requests get their 200."""
    body = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                     "data": [1, 2, 3, 4]}], "id": "x" * 100_000})  # fmt: skip
    one = (b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
    head = one.index(b"\r\n\r\n") + 4
    with socket.create_connection(("127.0.0.1", mlp_server.port), timeout=10) as sock:
        for piece in (one[:20], one[20:] + one[:30], one[30:]):
            sock.sendall(piece)
            time.sleep(0.1)
        answer = b""
        while answer.count(b"HTTP/1.1 ") < 2 or not answer.endswith(b"}"):
            chunk = sock.recv(1 << 20)
            assert chunk, answer[:300]
            answer += chunk
    assert head > 20
    assert answer.count(b"HTTP/1.1 200 OK") == 2, answer[:300]
