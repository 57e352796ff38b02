"""Every route of a real server, over both protocols, JSON and binary tensors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import pytest
import servekit

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]], np.float32)


def reference(model: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """What ONNX Runtime itself answers, in process: the ground truth for the server."""
    return ort.InferenceSession(str(model)).run(None, feeds)


def test_health_and_server_metadata(mlp_server: servekit.Server) -> None:
    with mlp_server.client() as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}
        meta = client.get("/v2").json()
    assert meta["name"] == "modelserve"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_readiness(mlp_server: servekit.Server) -> None:
    with mlp_server.client() as client:
        meta = client.get("/v2/models/mlp").json()
        versioned = client.get("/v2/models/mlp/versions/1").json()
        ready = client.get("/v2/models/mlp/ready")
        ready_versioned = client.get("/v2/models/mlp/versions/1/ready")
        v1 = client.get("/v1/models/mlp")
    assert meta == versioned
    assert meta == {
        "name": "mlp",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}],
    }
    assert ready.status_code == ready_versioned.status_code == 200
    assert ready.json() == {"name": "mlp", "ready": True}
    assert v1.json() == {"name": "mlp", "ready": True}


def test_v2_json_infer_matches_onnxruntime(mlp_server: servekit.Server, model_dir: Path) -> None:
    body = {
        "id": "req-1",
        "inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": ROWS.tolist()}],
    }
    with mlp_server.client() as client:
        response = client.post("/v2/models/mlp/infer", json=body)
        versioned = client.post("/v2/models/mlp/versions/1/infer", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_name"] == "mlp"
    assert answer["model_version"] == "1"
    assert answer["id"] == "req-1"
    (output,) = answer["outputs"]
    assert output["name"] == "output"
    assert output["datatype"] == "FP32"
    assert output["shape"] == [3, 3]
    (expected,) = reference(model_dir / "mlp.onnx", {"input": ROWS})
    np.testing.assert_allclose(np.array(output["data"]).reshape(3, 3), expected, rtol=1e-6)
    assert versioned.json() == answer


def test_v2_flat_data_is_row_major(mlp_server: servekit.Server) -> None:
    nested = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32",
                          "data": ROWS.tolist()}]}  # fmt: skip
    flat = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32",
                        "data": ROWS.reshape(-1).tolist()}]}  # fmt: skip
    with mlp_server.client() as client:
        a = client.post("/v2/models/mlp/infer", json=nested).json()
        b = client.post("/v2/models/mlp/infer", json=flat).json()
    assert a == b


def test_v2_binary_request_and_response(mlp_server: servekit.Server, model_dir: Path) -> None:
    header = orjson.dumps({
        "inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32",
                    "parameters": {"binary_data_size": ROWS.nbytes}}],
        "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
    })  # fmt: skip
    with mlp_server.client() as client:
        response = client.post(
            "/v2/models/mlp/infer",
            content=header + ROWS.tobytes(),
            headers={
                "Inference-Header-Content-Length": str(len(header)),
                "Content-Type": "application/octet-stream",
            },
        )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    head = orjson.loads(response.content[:length])
    (output,) = head["outputs"]
    assert output["parameters"]["binary_data_size"] == 3 * 3 * 4
    assert "data" not in output
    values = np.frombuffer(response.content[length:], dtype=np.float32).reshape(3, 3)
    (expected,) = reference(model_dir / "mlp.onnx", {"input": ROWS})
    np.testing.assert_array_equal(values, expected)


def test_v2_binary_input_json_output(mlp_server: servekit.Server) -> None:
    header = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                      "parameters": {"binary_data_size": 16}}]})  # fmt: skip
    with mlp_server.client() as client:
        response = client.post(
            "/v2/models/mlp/infer",
            content=header + ROWS[:1].tobytes(),
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["outputs"][0]["shape"] == [1, 3]


def test_v1_predict(mlp_server: servekit.Server, model_dir: Path) -> None:
    with mlp_server.client() as client:
        response = client.post("/v1/models/mlp:predict", json={"instances": ROWS.tolist()})
    assert response.status_code == 200, response.text
    (expected,) = reference(model_dir / "mlp.onnx", {"input": ROWS})
    np.testing.assert_allclose(np.array(response.json()["predictions"]), expected, rtol=1e-6)


def test_multi_input_datatypes_and_requested_outputs(multi_server: servekit.Server) -> None:
    body = {
        "inputs": [
            {"name": "a", "shape": [2, 3], "datatype": "INT64", "data": [1, 2, 3, 4, 5, 2**40]},
            {"name": "flag", "shape": [2, 1], "datatype": "BOOL", "data": [True, False]},
            {"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [0.5, 1.5, -2.0, 1e-300]},
            {"name": "h", "shape": [2, 2], "datatype": "FP16", "data": [0.5, 1.0, 2.0, 65504]},
        ],
        "outputs": [{"name": "sum_a"}, {"name": "not_flag"}, {"name": "x2"}, {"name": "h32"}],
    }
    with multi_server.client() as client:
        full = client.post("/v2/models/multi/versions/7/infer", json=body)
        body["outputs"] = [{"name": "x2"}]
        only = client.post("/v2/models/multi/infer", json=body)
    assert full.status_code == 200, full.text
    outputs = {o["name"]: o for o in full.json()["outputs"]}
    assert [o["name"] for o in full.json()["outputs"]] == ["sum_a", "not_flag", "x2", "h32"]
    assert outputs["sum_a"] == {"name": "sum_a", "datatype": "INT64", "shape": [2, 1],
                                "data": [6, 9 + 2**40]}  # fmt: skip
    assert outputs["not_flag"]["data"] == [False, True]
    assert outputs["x2"]["data"] == [1.0, 3.0, -4.0, 2e-300]
    assert outputs["h32"]["data"] == [0.5, 1.0, 2.0, 65504.0]
    assert full.json()["model_version"] == "7"
    assert [o["name"] for o in only.json()["outputs"]] == ["x2"]


def test_v1_predict_with_several_inputs(multi_server: servekit.Server) -> None:
    row = {"a": [1, 2, 3], "flag": [True], "x": [1.0, 2.0], "h": [1.0, 2.0]}
    with multi_server.client() as client:
        response = client.post("/v1/models/multi:predict", json={"instances": [row, row]})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    assert predictions[0] == {"sum_a": [6], "x2": [2.0, 4.0], "not_flag": [False],
                              "h32": [1.0, 2.0]}  # fmt: skip


def test_bytes_json_and_binary(strings_server: servekit.Server) -> None:
    json_body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                             "data": ["hello", "wörld"]}]}  # fmt: skip
    raw = b"".join(struct.pack("<I", len(s)) + s for s in [b"a", b"", "wörld\x00z".encode()])
    header = orjson.dumps({
        "inputs": [{"name": "text", "shape": [3], "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)}}],
        "parameters": {"binary_data_output": True},
    })  # fmt: skip
    with strings_server.client() as client:
        as_json = client.post("/v2/models/strings/infer", json=json_body)
        as_binary = client.post(
            "/v2/models/strings/infer",
            content=header + raw,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
    assert as_json.json()["outputs"][0]["data"] == ["hello", "wörld"]
    assert as_binary.status_code == 200, as_binary.text
    length = int(as_binary.headers["inference-header-content-length"])
    assert as_binary.content[length:] == raw


def test_fixed_shape_model_serves_without_batching(fixed_server: servekit.Server) -> None:
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                        "data": [1, 2, 3, 4]}]}  # fmt: skip
    with fixed_server.client() as client:
        response = client.post("/v2/models/fixed/infer", json=body)
        wrong = client.post(
            "/v2/models/fixed/infer",
            json={"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                              "data": [0] * 8}]},
        )  # fmt: skip
    assert response.json()["outputs"][0]["data"] == [2.0, 3.0, 4.0, 5.0]
    assert wrong.status_code == 400
    assert "expected shape [1, 4], got [2, 4]" in wrong.json()["error"]


def test_triton_style_config(mlp_server: servekit.Server) -> None:
    with mlp_server.client() as client:
        config = client.get("/v2/models/mlp/config").json()
    assert config["max_batch_size"] == 32
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [4]}]


def test_keep_alive_and_pipelining(mlp_server: servekit.Server) -> None:
    """Three requests written at once on one connection are answered in order."""
    import socket

    body = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                     "data": [1, 2, 3, 4]}]})  # fmt: skip
    infer = (
        b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip
    live = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", mlp_server.port), timeout=5) as sock:
        sock.sendall(infer + live + infer)
        data = b""
        while data.count(b"HTTP/1.1 200 OK") < 3 or not data.endswith(b"]}]}"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    first, second = data.index(b'"model_name"'), data.index(b'{"live":true}')
    assert first < second < data.rindex(b'"model_name"')


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_request_body(mlp_server: servekit.Server, encoding: str) -> None:
    import gzip
    import zlib

    body = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                     "data": [1, 2, 3, 4]}]})  # fmt: skip
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    with mlp_server.client() as client:
        response = client.post(
            "/v2/models/mlp/infer", content=packed, headers={"Content-Encoding": encoding}
        )
        plain = client.post("/v2/models/mlp/infer", content=body)
    assert response.status_code == 200, response.text
    assert response.json() == plain.json()


def test_sample_iris_model_script(tmp_path: Path, log_dir: Path) -> None:
    """The script the Dockerfile runs writes a model that serves and classifies iris."""
    import subprocess
    import sys

    target = tmp_path / "iris-v1.onnx"
    script = servekit.REPO / "serving_image" / "make_sample_model.py"
    subprocess.run([sys.executable, str(script), str(target)], check=True)
    server = servekit.start(f"file://{target}", log_dir=log_dir)
    try:
        with server.client() as client:
            answer = client.post("/v1/models/iris-v1:predict", json={"instances": ROWS.tolist()})
        predictions = answer.json()["predictions"]
        assert [p["label"] for p in predictions] == [0, 1, 2]
        assert all(abs(sum(p["probabilities"]) - 1) < 1e-5 for p in predictions)
    finally:
        assert server.stop() == 0


def test_structured_access_log_without_payloads(mlp_server: servekit.Server) -> None:
    """mlp_server logs JSON: one access line per request, never the body or the token."""
    import json
    import time

    marker = 12345.678
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                        "data": [marker, 0, 0, 0]}]}  # fmt: skip
    with mlp_server.client() as client:
        response = client.post(
            "/v2/models/mlp/infer",
            json=body,
            headers={"X-Request-Id": "trace-42", "Authorization": "Bearer not-logged"},
        )
    assert response.status_code == 200
    deadline = time.monotonic() + 5
    while '"trace-42"' not in mlp_server.logs():  # the access log is flushed once a second
        assert time.monotonic() < deadline, mlp_server.logs()
        time.sleep(0.1)
    lines = [json.loads(line) for line in mlp_server.logs().splitlines() if "trace-42" in line]
    (entry,) = lines
    assert entry["type"] == "access"
    assert entry["method"] == "POST"
    assert entry["path"] == "/v2/models/mlp/infer"
    assert entry["status"] == 200
    assert entry["bytes_in"] > 0
    assert entry["duration_ms"] > 0
    assert str(marker) not in mlp_server.logs()
    assert "not-logged" not in mlp_server.logs()
    startup = [json.loads(line) for line in mlp_server.logs().splitlines() if '"level"' in line]
    assert any("ready" in entry["message"] for entry in startup)
