"""HTTP details real clients trip on: h2c upgrades, pipelined refusals, multi-member gzip,
`Expect: 100-continue` with auth, credentials checked at the request head, and every refusal
counted in `modelserve_requests_total`.

Raw sockets where a client library would hide the detail under test (the order of answers on
one connection, a body never sent); curl where a real client is the point.
"""

from __future__ import annotations

import gzip
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import servekit

TOKEN = "t0ken-for-http-tests"
BODY = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
)
INFER = b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def infer_request(body: bytes = BODY, extra: bytes = b"") -> bytes:
    """One complete POST of `body` to the MLP's infer route (extra: more header lines)."""
    return INFER + extra + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(1 << 20):
        data += chunk
    return data


def statuses(raw: bytes) -> list[int]:
    """The status codes of the answers in `raw`, in the order they were written (a JSON body
    ends without a line break, so the next status line can follow it on the same line)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]


@pytest.fixture(scope="module")
def token_server(model_dir: Path, log_dir: Path) -> Iterator[servekit.Server]:
    server = servekit.start(model_dir / "mlp.onnx", log_dir=log_dir,
                            env={"MODELSERVE_AUTH_TOKEN": TOKEN})  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def held_server(model_dir: Path, log_dir: Path) -> Iterator[servekit.Server]:
    """Holds each batch for 400 ms, so a pipelined request's answer is still pending when the
    next request on the connection is refused; small limits, to refuse easily."""
    server = servekit.start(
        model_dir / "mlp.onnx", "--batching", "true", "--max-delay-ms", "400",
        "--max-body-bytes", "1000", "--request-timeout", "0.5", log_dir=log_dir,
    )  # fmt: skip
    yield server
    server.stop()


# --- Upgrade: h2c --------------------------------------------------------------------------


def test_h2c_upgrade_is_answered_as_http11_with_the_body(mlp_server: servekit.Server) -> None:
    """`curl --http2` on http:// asks to upgrade; the server may ignore that (RFC 9110 7.8) but
    must then answer the request itself, body included, exactly once."""
    upgrade = (b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
               b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n")  # fmt: skip
    last = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", mlp_server.port), timeout=10) as sock:
        sock.sendall(infer_request(extra=upgrade) + last)
        raw = read_until_closed(sock)
    assert statuses(raw) == [200, 200], raw
    assert b'"outputs"' in raw
    assert b'{"live":true}' in raw


def test_connect_gets_one_400(mlp_server: servekit.Server) -> None:
    """CONNECT is an upgrade too (to a tunnel); not a proxy, the server refuses it, once."""
    with socket.create_connection(("127.0.0.1", mlp_server.port), timeout=10) as sock:
        sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        raw = read_until_closed(sock)
    assert statuses(raw) == [400], raw
    assert b"CONNECT is not supported" in raw


def test_every_request_target_form_reaches_its_route(mlp_server: servekit.Server) -> None:
    """The server reads the common target (`/path`) without a URL parser; a query string, a
    fragment and the absolute form a proxy sends (RFC 9112 3.2.2) still go through one, and
    each names the same route."""
    targets = [b"/v2/models/mlp/infer", b"/v2/models/mlp/infer?trace=1",
               b"/v2/models/mlp/infer#f", b"http://x/v2/models/mlp/infer?a=b"]  # fmt: skip
    for target in targets:
        head = INFER.replace(b"/v2/models/mlp/infer", target, 1)
        wire = head + b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
        with socket.create_connection(("127.0.0.1", mlp_server.port), timeout=10) as sock:
            sock.sendall(wire + b"Connection: close\r\n\r\n" + BODY)
            raw = read_until_closed(sock)
        assert statuses(raw) == [200], (target, raw)
        assert b'"outputs"' in raw, target


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_http2_prior_upgrade_gets_one_http11_answer(mlp_server: servekit.Server) -> None:
    result = subprocess.run(
        ["curl", "--http2", "-sS", "-i", "--max-time", "10", "-H",
         "Content-Type: application/json", "--data-binary", "@-",
         f"{mlp_server.url}/v2/models/mlp/infer"],
        input=BODY, capture_output=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert statuses(result.stdout) == [200], result.stdout
    assert orjson.loads(result.stdout.split(b"\r\n\r\n", 1)[1])["outputs"][0]["shape"] == [1, 3]


# --- Pipelining ----------------------------------------------------------------------------

REFUSED = {
    "413": (infer_request(b"{" + b" " * 2000 + b"}"), 413),
    "431": (b"GET /v2/health/live HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    "400": (b"GARBAGE / HTTP/1.1\r\n\r\n", 400),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_pipelined_answers_stay_in_order_when_a_later_request_is_refused(
    held_server: servekit.Server, case: str
) -> None:
    refused, status = REFUSED[case]
    with socket.create_connection(("127.0.0.1", held_server.port), timeout=10) as sock:
        sock.sendall(infer_request() + refused)
        raw = read_until_closed(sock)
    assert statuses(raw) == [200, status], raw[:300]
    first_answer_end = raw.index(b"]}]}") + 4
    assert raw.index(b"HTTP/1.1 " + str(status).encode()) == first_answer_end, raw[:300]
    assert raw.count(b"connection: close") == 1


# --- Content-Encoding ----------------------------------------------------------------------


def test_multi_member_gzip_body_is_decoded_completely(mlp_server: servekit.Server) -> None:
    """Concatenated gzip members are one gzip stream (RFC 1952 2.2), as `cat a.gz b.gz` makes."""
    packed = gzip.compress(BODY[:30]) + gzip.compress(BODY[30:])
    with mlp_server.client() as client:
        response = client.post("/v2/models/mlp/infer", content=packed,
                               headers={"Content-Encoding": "gzip"})  # fmt: skip
        plain = client.post("/v2/models/mlp/infer", content=BODY)
    assert response.status_code == 200, response.text
    assert response.json() == plain.json()


def test_multi_member_gzip_keeps_the_decompressed_size_limit(
    held_server: servekit.Server,
) -> None:
    """Two members under the 1000-byte limit each, over it together: 413, not a cut body."""
    padded = BODY[:-1] + b" " * 1200 + b"}"
    packed = gzip.compress(padded[:600]) + gzip.compress(padded[600:])
    assert len(packed) < 1000
    response = httpx.post(f"{held_server.url}/v2/models/mlp/infer", content=packed,
                          headers={"Content-Encoding": "gzip"})  # fmt: skip
    assert response.status_code == 413, response.text
    assert "decompressed body exceeds the limit of 1000 bytes" in response.json()["error"]


def test_truncated_gzip_body_is_refused(mlp_server: servekit.Server) -> None:
    packed = gzip.compress(BODY)[:-12]
    response = httpx.post(f"{mlp_server.url}/v2/models/mlp/infer", content=packed,
                          headers={"Content-Encoding": "gzip"})  # fmt: skip
    assert response.status_code == 400
    assert "truncated" in response.json()["error"]


# --- Credentials at the request head -------------------------------------------------------


def test_100_continue_only_after_the_credentials_pass(token_server: servekit.Server) -> None:
    expect = b"Expect: 100-continue\r\n"
    head = INFER + expect + b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    with socket.create_connection(("127.0.0.1", token_server.port), timeout=5) as sock:
        sock.sendall(head + b"\r\n")
        refused = sock.recv(65536)
    assert refused.startswith(b"HTTP/1.1 401 "), refused
    assert b"100 Continue" not in refused
    with socket.create_connection(("127.0.0.1", token_server.port), timeout=5) as sock:
        sock.sendall(head + b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(BODY)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer


def test_an_unauthenticated_upload_is_refused_at_the_head(token_server: servekit.Server) -> None:
    """A 15 MB upload without credentials is answered 401 before one byte of its body is sent:
    the server never buffers a body it would refuse."""
    head = INFER + b"Content-Length: 15000000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", token_server.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(head)
        answer = sock.recv(65536)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 401 "), answer
    assert b"connection: close" in answer
    assert b"www-authenticate: Bearer" in answer
    assert waited < 2


# --- Every answer counted ------------------------------------------------------------------


def test_refusals_are_counted_in_requests_total(model_dir: Path, log_dir: Path) -> None:
    server = servekit.start(
        model_dir / "mlp.onnx", "--max-body-bytes", "1000", "--request-timeout", "0.5",
        log_dir=log_dir,
    )  # fmt: skip
    try:
        with server.client() as client:
            assert client.post("/v2/models/nope/infer", content=BODY).status_code == 404
            assert client.get("/nowhere").status_code == 404
            assert client.get("/v2/models/mlp/infer").status_code == 405
            big = client.post("/v2/models/mlp/infer", content=b"{" + b" " * 2000 + b"}")
            assert big.status_code == 413
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(INFER + b"Content-Length: 100\r\n\r\n{")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 431 ")
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    counted = {
        line.split('code="')[1].split('"')[0]: line
        for line in metrics.splitlines()
        if line.startswith("modelserve_requests_total{")
    }
    for code in ("404", "405", "408", "413", "431"):
        assert code in counted, metrics
    assert 'protocol="v2"' in counted["405"]
    assert 'protocol="v2"' in counted["413"]
