"""Unchanged clients work: NVIDIA's tritonclient.http (binary and JSON tensors) and KServe's
REST client (JSON and binary tensors), plus the plain OIP v2 JSON that KServe's client sends."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import servekit
import tritonclient.http as triton


def test_tritonclient_end_to_end(mlp_server: servekit.Server, model_dir: Path) -> None:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{mlp_server.port}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mlp")
    assert client.get_server_metadata()["name"] == "modelserve"
    metadata = client.get_model_metadata("mlp")
    assert metadata["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, 4]}
    assert client.get_model_config("mlp")["max_batch_size"] == 32

    rows = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    (expected,) = ort.InferenceSession(str(model_dir / "mlp.onnx")).run(None, {"input": rows})
    for binary in (True, False):
        tensor = triton.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        outputs = [triton.InferRequestedOutput("output", binary_data=binary)]
        result = client.infer("mlp", [tensor], outputs=outputs, request_id="t1")
        np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6)
        assert result.get_response()["id"] == "t1"
    # No outputs named: tritonclient asks for every output in binary.
    result = client.infer("mlp", [tensor])
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6)
    client.close()


def test_tritonclient_multi_datatypes_and_compression(multi_server: servekit.Server) -> None:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{multi_server.port}")
    values = {
        "a": np.array([[1, 2, 3]], dtype=np.int64),
        "flag": np.array([[True]]),
        "x": np.array([[1.5, -2.5]], dtype=np.float64),
        "h": np.array([[0.25, 4.0]], dtype=np.float16),
    }
    datatypes = {"a": "INT64", "flag": "BOOL", "x": "FP64", "h": "FP16"}
    inputs = []
    for name, array in values.items():
        tensor = triton.InferInput(name, list(array.shape), datatypes[name])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer("multi", inputs, model_version="7", request_compression_algorithm="gzip")
    assert result.as_numpy("sum_a").tolist() == [[6]]
    assert result.as_numpy("not_flag").tolist() == [[False]]
    assert result.as_numpy("x2").tolist() == [[3.0, -5.0]]
    assert result.as_numpy("h32").tolist() == [[0.25, 4.0]]
    client.close()


def test_tritonclient_bytes(strings_server: servekit.Server) -> None:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{strings_server.port}")
    text = np.array(["ünïcode", "", "plain"], dtype=np.object_)
    tensor = triton.InferInput("text", [3], "BYTES")
    tensor.set_data_from_numpy(text)
    result = client.infer("strings", [tensor])
    assert [v.decode() for v in result.as_numpy("echo")] == ["ünïcode", "", "plain"]
    client.close()


def test_kserve_style_json_request(mlp_server: servekit.Server) -> None:
    """What kserve's InferenceRESTClient (v2) puts on the wire: a JSON InferRequest, no
    binary extension, `parameters` passed through."""
    body = {
        "id": "kserve-1",
        "parameters": {"custom": "value"},
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                    "data": [[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]], "parameters": {}}],
        "outputs": [{"name": "output", "parameters": {}}],
    }  # fmt: skip
    with mlp_server.client() as client:
        response = client.post("/v2/models/mlp/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "kserve-1"
    assert response.json()["outputs"][0]["shape"] == [2, 3]


def test_kserve_rest_client(mlp_server: servekit.Server, model_dir: Path) -> None:
    """KServe's own InferenceRESTClient, JSON and binary tensors, run from a virtualenv of its
    own. `make test` always provides one (MODELSERVE_KSERVE_PYTHON); without it this skips."""
    python = os.environ.get("MODELSERVE_KSERVE_PYTHON")
    if not python:
        pytest.skip("KServe's client is not set up: run `make kserve-client`, or `make test`")
    assert Path(python).exists(), f"MODELSERVE_KSERVE_PYTHON={python} does not exist"
    rows = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    (expected,) = ort.InferenceSession(str(model_dir / "mlp.onnx")).run(None, {"input": rows})
    script = Path(__file__).with_name("kserve_client.py")
    done = subprocess.run(
        [python, str(script), mlp_server.url, "mlp", json.dumps(rows.tolist())],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["server_ready"] is True
    assert answer["model_ready"] is True
    assert [(a["binary"], a["id"], a["name"]) for a in answer["infer"]] == [
        (False, "k", "output"),
        (True, "k", "output"),
    ]
    for infer in answer["infer"]:
        np.testing.assert_allclose(np.array(infer["data"], np.float32), expected, rtol=1e-6)
