"""SIGTERM: readiness goes false, requests already received finish, then the process exits 0."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnx_models
import orjson
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


def slow_model(path: Path) -> Path:
    """`input` FP32 [batch, 1] → `output` = input, after max(input) turns of a 64x64 MatMul
    inside a Loop: the client chooses how long the inference takes (zeros, as in a warm-up,
    take no time)."""
    from onnx import TensorProto, helper, numpy_helper

    spin = helper.make_graph(
        [helper.make_node("MatMul", ["acc_in", "w"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "spin",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [64, 64])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [64, 64])],
    )  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["input"], ["top"], keepdims=0),
         helper.make_node("Cast", ["top"], ["turns"], to=TensorProto.INT64),
         helper.make_node("Loop", ["turns", "yes", "start"], ["acc"], body=spin),
         helper.make_node("ReduceSum", ["acc"], ["total"], keepdims=0),
         helper.make_node("Mul", ["total", "zero"], ["nothing"]),
         helper.make_node("Add", ["input", "nothing"], ["output"])],
        "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(np.array(True), "yes"),
         numpy_helper.from_array((np.eye(64) * 0.5).astype(np.float32), "w"),
         numpy_helper.from_array(np.eye(64, dtype=np.float32), "start"),
         numpy_helper.from_array(np.array(0, dtype=np.float32), "zero")],
    )  # fmt: skip
    return onnx_models.save_model(graph, path)


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The slow model, and the turns per second it runs on this machine (measured in process)."""
    import onnxruntime as ort

    path = slow_model(tmp_path_factory.mktemp("slow") / "slow.onnx")
    session = ort.InferenceSession(str(path))
    started = time.perf_counter()
    session.run(None, {"input": np.array([[20_000]], np.float32)})
    return path, 20_000 / (time.perf_counter() - started)


def slow_body(turns: float) -> bytes:
    return orjson.dumps({"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP32",
                                     "data": [round(turns)]}]})  # fmt: skip


def test_drain_timeout_answers_503_and_exits_3(slow: tuple[Path, float], log_dir: Path) -> None:
    """An inference still running when --drain-timeout ends: its client gets a 503 (retry
    elsewhere), the process exits 3 without an abort, and no 200 is logged for it."""
    path, rate = slow
    server = servekit.start(path, "--drain-timeout", "1", log_dir=log_dir)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(httpx.post, f"{server.url}/v2/models/slow/infer",
                           content=slow_body(rate * 10), timeout=30)  # fmt: skip
        deadline = time.monotonic() + 10
        while "inflight_requests{" not in (text := httpx.get(f"{server.url}/metrics").text) or (
            float(text.split("modelserve_inflight_requests{")[1].split("\n")[0].split()[-1]) < 1
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(20)
        stopped = time.monotonic() - started
        answer = held.result()
    logs = server.logs()
    assert code == 3, logs
    assert stopped < 5
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert "shutting down" in answer.json()["error"]
    assert "drain timed out" in logs
    assert "Traceback" not in logs
    assert "terminate called" not in logs
    infer_lines = [line for line in logs.splitlines() if '"POST /v2/models/slow/infer"' in line]
    assert [line.split('" ')[1].split()[0] for line in infer_lines] == ["503"], infer_lines


def test_an_answer_the_client_never_got_is_not_counted_as_200(
    slow: tuple[Path, float], log_dir: Path
) -> None:
    """The client hangs up while its inference runs: the answer cannot be delivered, so it is
    logged and counted as 499 (client closed request, nginx's code), never as a 200."""
    path, rate = slow
    server = servekit.start(path, log_dir=log_dir)
    body = slow_body(rate * 1.5)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
            time.sleep(0.3)
        deadline = time.monotonic() + 20
        while "modelserve_requests_total{" not in (
            metrics := httpx.get(f"{server.url}/metrics").text
        ):
            assert time.monotonic() < deadline, metrics
            time.sleep(0.1)
        time.sleep(1.2)  # the access log is flushed once a second
    finally:
        assert server.stop() == 0
    requests = [line for line in metrics.splitlines()
                if line.startswith("modelserve_requests_total{")]  # fmt: skip
    assert not [line for line in requests if 'code="200"' in line], requests
    assert [line for line in requests if 'code="499"' in line], requests
    infer_lines = [line for line in server.logs().splitlines() if "/v2/models/slow/infer" in line]
    assert len(infer_lines) == 1, infer_lines
    assert '" 499 ' in infer_lines[0]


def test_help_documents_the_exit_codes() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "modelserve", "--help"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert "exit codes" in out.lower()
    for line in ("0 ", "1 ", "2 ", "3 "):
        assert any(row.strip().startswith(line) for row in out.splitlines()), out


def test_sigterm_under_load_resets_no_request(model_dir: Path, log_dir: Path) -> None:
    """32 keep-alive clients in a loop, batching on, SIGTERM: every request gets its answer (200)
    or a refused connection, never a reset. The drain used to close the keep-alive connections
    it found idle at once, resetting requests already on their way (1 to 4 per drain in two of
    three probes, some sent before the signal); what arrives in the first 0.2 s is now served,
    its answer closing the connection."""
    server = servekit.start(model_dir / "mlp.onnx", "--batching", "true", log_dir=log_dir)
    body = orjson.dumps(BODY)
    outcomes: list[tuple[float, str]] = []
    stop = threading.Event()

    def client() -> None:
        conn: http.client.HTTPConnection | None = None
        while not stop.is_set():
            sent = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
                conn.request("POST", "/v2/models/mlp/infer", body)
                answer = conn.getresponse()
                answer.read()
                outcome = str(answer.status)
                if answer.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except ConnectionRefusedError:
                outcome = "refused"
                conn = None
                time.sleep(0.05)
            except OSError as exc:  # reset, broken pipe, closed before an answer
                outcome = type(exc).__name__
                conn = None
            except http.client.HTTPException as exc:
                outcome = type(exc).__name__
                conn = None
            outcomes.append((sent, outcome))

    threads = [threading.Thread(target=client) for _ in range(32)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(20)
    stop.set()
    for thread in threads:
        thread.join()
    before = {outcome for sent, outcome in outcomes if sent < signalled}
    after = {outcome for sent, outcome in outcomes if sent >= signalled}
    assert code == 0
    assert before == {"200"}, sorted(outcome for _, outcome in outcomes if outcome != "200")
    assert after <= {"200", "refused"}, after
