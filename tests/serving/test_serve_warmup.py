"""Warm-up never refuses a valid model: real exports need real sizes (a reflect Pad needs two
samples, a YOLO-style neck multiples of 32, a bidirectional state two directions), and a model
no synthetic input runs still serves, saying so. Users can give real samples instead."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx_models
import onnxruntime as ort
import pytest
import servekit
import tritonclient.http as triton

from modelserve.errors import ModelLoadError
from modelserve.model import Model, SessionOptions
from modelserve.warmup import prepare, read_samples


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_models.write_models(
        tmp_path_factory.mktemp("warmup-models"),
        onnx_models.reflect_pad, onnx_models.strided_concat,
        onnx_models.recurrent, onnx_models.unrunnable,
    )  # fmt: skip


def tensor(name: str, values: np.ndarray) -> dict[str, Any]:
    return {"name": name, "shape": list(values.shape), "datatype": "FP32",
            "data": values.reshape(-1).tolist()}  # fmt: skip


def gauge(server: servekit.Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


def warnings(server: servekit.Server) -> list[str]:
    return [line for line in server.logs().splitlines() if " WARNING " in line]


def infer(server: servekit.Server, name: str, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    body = {"inputs": [tensor(n, v) for n, v in feeds.items()]}
    answer = httpx.post(f"{server.url}/v2/models/{name}/infer", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"])
            for o in answer.json()["outputs"]}  # fmt: skip


RNG = np.random.default_rng(12)
REAL_INPUTS = {
    "reflect_pad": {"x": RNG.standard_normal((2, 16)).astype(np.float32)},
    "strided_concat": {"x": RNG.standard_normal((1, 3, 64, 96)).astype(np.float32)},
    "recurrent": {
        "x": RNG.standard_normal((2, 3, 4)).astype(np.float32),
        "h0": RNG.standard_normal((2, 3, 8)).astype(np.float32),
    },
}


@pytest.mark.parametrize("name", sorted(REAL_INPUTS))
def test_models_that_need_real_sizes_warm_up_and_serve(
    models: Path, log_dir: Path, name: str
) -> None:
    """Each failed the warm-up at size 1 and the server exited: a crash-looping pod."""
    server = servekit.start(models / f"{name}.onnx", log_dir=log_dir)
    try:
        feeds = REAL_INPUTS[name]
        answer = infer(server, name, feeds)
        config = httpx.get(f"{server.url}/v2/models/{name}/config").json()
        skipped = gauge(server, "modelserve_warmup_skipped")
    finally:
        assert server.stop() == 0
    expected = ort.InferenceSession(str(models / f"{name}.onnx")).run(None, feeds)
    for got, want in zip(answer.values(), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert config["parameters"]["warmup"] == {"string_value": "ok"}
    assert skipped == 0
    assert warnings(server) == []


def test_a_model_no_synthetic_input_runs_still_serves(models: Path, log_dir: Path) -> None:
    """Ready with the session loaded and its sha256 held, one warning that says why, the gauge
    at 1, and `warmup: skipped` with the reason in the metadata and the config."""
    server = servekit.start(models / "unrunnable.onnx", log_dir=log_dir)
    try:
        metadata = httpx.get(f"{server.url}/v2/models/unrunnable").json()
        config = httpx.get(f"{server.url}/v2/models/unrunnable/config").json()
        client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        triton_metadata = client.get_model_metadata("unrunnable")
        client.close()
        skipped = gauge(server, "modelserve_warmup_skipped")
        x = np.ones((3, onnx_models.MATMUL_FEATURES), np.float32)
        answer = infer(server, "unrunnable", {"x": x})
        info = httpx.get(f"{server.url}/metrics").text
    finally:
        assert server.stop() == 0
    (warning,) = warnings(server)
    assert "warm-up skipped" in warning
    assert "MatMul" in warning  # why: ONNX Runtime's own words at the first size tried
    assert skipped == 1
    assert metadata["parameters"]["warmup"] == "skipped"
    assert "MatMul" in metadata["parameters"]["warmup_reason"]
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]
    assert triton_metadata["name"] == "unrunnable"
    assert config["parameters"]["warmup"] == {"string_value": "skipped"}
    weights = np.arange(10, dtype=np.float32).reshape(5, 2) / 10
    np.testing.assert_allclose(answer["y"], x @ weights)
    digest = hashlib.sha256((models / "unrunnable.onnx").read_bytes()).hexdigest()
    assert f'sha256="{digest}"' in info  # the session loaded and the served bytes are known


def test_a_warmup_file_warms_the_model_up_for_real(
    models: Path, log_dir: Path, tmp_path: Path
) -> None:
    """One OIP v2 request body with the width the model needs: a real warm-up, no warning."""
    sample = {"inputs": [tensor("x", np.ones((2, onnx_models.MATMUL_FEATURES), np.float32))]}
    path = tmp_path / "warmup.json"
    path.write_text(json.dumps(sample))
    server = servekit.start(models / "unrunnable.onnx", "--warmup-file", str(path),
                            log_dir=log_dir)  # fmt: skip
    try:
        metadata = httpx.get(f"{server.url}/v2/models/unrunnable").json()
        config = httpx.get(f"{server.url}/v2/models/unrunnable/config").json()
        skipped = gauge(server, "modelserve_warmup_skipped")
    finally:
        assert server.stop() == 0
    assert "parameters" not in metadata  # a healthy start keeps the plain OIP metadata
    assert config["parameters"]["warmup"] == {"string_value": "ok"}
    assert str(path) in config["parameters"]["warmup_reason"]["string_value"]
    assert skipped == 0
    assert warnings(server) == []


def test_the_warmup_file_from_the_environment(models: Path, log_dir: Path, tmp_path: Path) -> None:
    """MODELSERVE_WARMUP_FILE, as the operator mounts it; a JSON array of bodies."""
    bodies = [{"inputs": [tensor("x", np.full((rows, 5), rows, np.float32))]} for rows in (1, 3)]
    path = tmp_path / "samples.json"
    path.write_text(json.dumps(bodies))
    server = servekit.start(models / "unrunnable.onnx", log_dir=log_dir,
                            env={"MODELSERVE_WARMUP_FILE": str(path)})  # fmt: skip
    try:
        config = httpx.get(f"{server.url}/v2/models/unrunnable/config").json()
    finally:
        assert server.stop() == 0
    assert "2 samples" in config["parameters"]["warmup_reason"]["string_value"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"inputs": [{"name": "nope", "shape": [1, 5], "datatype": "FP32", "data": [1,2,3,4,5]}]}',
         "sample 1: input 'nope' is not an input of model 'unrunnable'"),
        ('{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}',
         "sample 1 failed in ONNX Runtime"),
    ],
)  # fmt: skip
def test_a_bad_warmup_file_is_a_clear_startup_error(
    models: Path, log_dir: Path, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    server = servekit.start(models / "unrunnable.onnx", "--warmup-file", str(path),
                            log_dir=log_dir, wait_ready=False)  # fmt: skip
    assert server.process.wait(20) == 1
    logs = server.logs()
    assert f"warm-up file {path}" in logs
    assert message in logs
    assert "Traceback" not in logs


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is not valid JSON"),
        ("3", "must hold an OIP v2 inference request (a JSON object) or an array of them"),
        ("[]", "holds an empty array"),
        ('[{"inputs": []}, 7]', "item 2 is not a JSON object"),
    ],
)
def test_warmup_file_contents_are_checked_before_the_model_loads(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "samples.json"
    path.write_text(content)
    with pytest.raises(ModelLoadError, match=re.escape(message)) as error:
        read_samples(path)
    assert str(path) in str(error.value)


BINARY_HEAD = (
    b'{"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32", '
    b'"parameters": {"binary_data_size": 20}}]}'
)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(BINARY_HEAD + np.ones(5, np.float32).tobytes(), id="header-and-tensors"),
        pytest.param(BINARY_HEAD, id="header-only"),
    ],
)
def test_a_binary_extension_warmup_file_says_samples_are_json(
    models: Path, tmp_path: Path, content: bytes
) -> None:
    """A body saved from a binary-extension client: either it is not JSON ("str is not valid
    UTF-8: surrogates not allowed" was all it said), or its header asks for an
    Inference-Header-Content-Length that a file cannot give. Both now say what a sample is."""
    path = tmp_path / "binary.json"
    path.write_bytes(content)
    model = Model.load(models / "unrunnable.onnx", name="unrunnable", version="1", sha256="-",
                       options=SessionOptions())  # fmt: skip
    with pytest.raises(ModelLoadError) as error:
        prepare(model, samples=read_samples(path))
    assert str(path) in str(error.value)
    assert "values in 'data'" in str(error.value)
    assert "binary tensor extension" in str(error.value)


def test_a_missing_warmup_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read it") as error:
        read_samples(tmp_path / "absent.json")
    assert str(tmp_path / "absent.json") in str(error.value)


def test_synthetic_warmup_is_bounded(models: Path) -> None:
    """Every candidate size fails fast for the unrunnable model: the search is short."""
    model = Model.load(models / "unrunnable.onnx", name="unrunnable", version="1",
                       sha256="-", options=SessionOptions())  # fmt: skip
    started = time.perf_counter()
    prepare(model)
    assert time.perf_counter() - started < 5
    assert model.warmup.state == "skipped"
    assert "1, 2, 8, 32, 64, 224" in model.warmup.reason


def test_warmup_off_is_reported_not_hidden(models: Path) -> None:
    model = Model.load(models / "reflect_pad.onnx", name="reflect_pad", version="1",
                       sha256="-", options=SessionOptions())  # fmt: skip
    prepare(model, warmup=False)
    assert model.warmup.state == "off"
    assert model.metadata()["parameters"]["warmup"] == "off"


def test_a_model_too_large_to_warm_up_synthetically_says_so(tmp_path: Path) -> None:
    """A fixed input of 2**24 + 1 values is over the synthetic warm-up's size limit, so no size
    was tried at all; the reason used to end "the first try failed with: )", naming no try."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, (1 << 24) + 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, (1 << 24) + 1])],
    )
    path = tmp_path / "huge.onnx"
    onnx_models.save_graph(graph, path)
    model = Model.load(path, name="huge", version="1", sha256="-", options=SessionOptions())
    prepare(model)
    assert model.warmup.state == "skipped"
    assert "16777217 values" in model.warmup.reason, model.warmup.reason
    assert "failed with: )" not in model.warmup.reason
