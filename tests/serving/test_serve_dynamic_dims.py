"""Models whose dynamic dimensions are more than a batch: shared symbolic dimensions, rows of
varying width, and outputs whose first dimension is not the batch. Each must be answered
right, or refused with a 400 that says why; never a 500, a hang, or another client's rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
import servekit
from onnx import TensorProto, helper

from modelserve.codec import decode_v2
from modelserve.errors import BadRequestError
from modelserve.metrics import DriftStats
from modelserve.model import Model, SessionOptions


@pytest.fixture(scope="module")
def ragged_server(model_dir: Path, log_dir: Path) -> Iterator[servekit.Server]:
    server = servekit.start(model_dir / "ragged.onnx", log_dir=log_dir)
    yield server
    assert server.stop() == 0


def tensor(name: str, rows: np.ndarray) -> dict[str, Any]:
    return {"name": name, "shape": list(rows.shape), "datatype": "FP32",
            "data": rows.reshape(-1).tolist()}  # fmt: skip


def test_inputs_that_disagree_on_a_shared_dimension_get_400(
    ragged_server: servekit.Server,
) -> None:
    body = {"inputs": [tensor("x", np.ones((1, 3), np.float32)),
                       tensor("z", np.ones((1, 2), np.float32))]}  # fmt: skip
    with ragged_server.client() as client:
        answer = client.post("/v2/models/ragged/infer", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "input 'z': dimension 'seq' is 2, but input 'x' has 3"


def test_rows_of_varying_width_are_answered_and_metrics_keep_working(
    ragged_server: servekit.Server,
) -> None:
    """Widths 3, 5, 2 and then enough rows to fold the drift statistics: every answer right,
    and /metrics still answers (it used to fail for good after mixed widths)."""
    rng = np.random.default_rng(4)
    with ragged_server.client() as client:
        for width, rows in ((3, 1), (5, 1), (2, 1), (4, 600)):
            x = rng.standard_normal((rows, width)).astype(np.float32)
            z = rng.standard_normal((rows, width)).astype(np.float32)
            body = {"inputs": [tensor("x", x), tensor("z", z)]}
            answer = client.post("/v2/models/ragged/infer", json=body)
            assert answer.status_code == 200, answer.text
            (output,) = answer.json()["outputs"]
            np.testing.assert_array_equal(np.array(output["data"], np.float32), (x + z).ravel())
        metrics = client.get("/metrics")
    assert metrics.status_code == 200
    # Tracked at the first width seen (3): the 1-row width-2 request is left out of the drift.
    assert 'modelserve_input_rows{input="x",model="ragged",version="1"} 602.0' in metrics.text
    assert 'feature="2",input="x"' in metrics.text
    assert 'feature="3",input="x"' not in metrics.text


def test_an_empty_tensor_with_an_impossible_shape_gets_400(ragged_server: servekit.Server) -> None:
    """No values, so the count matches, yet numpy cannot hold the shape: a 400, not a 500."""
    empty = {"shape": [0, 2**62], "datatype": "FP32", "data": []}
    body = {"inputs": [{"name": "x", **empty}, {"name": "z", **empty}]}
    with ragged_server.client() as client:
        answer = client.post("/v2/models/ragged/infer", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "input 'x': shape [0, 4611686018427387904] is too large"


def test_outputs_without_the_batch_dimension_are_never_split_across_clients(
    model_dir: Path, log_dir: Path
) -> None:
    """A Reshape to [-1] declares a dynamic first output dimension that is not the batch. A
    batch of such requests is re-run one by one and batching stops; every client gets its own
    values."""
    server = servekit.start(model_dir / "flat.onnx", "--batching", "true", "--max-delay-ms", "50",
                            log_dir=log_dir)  # fmt: skip
    rng = np.random.default_rng(9)
    requests = [rng.standard_normal((1 + i % 3, 4)).astype(np.float32) for i in range(60)]

    def call(rows: np.ndarray) -> np.ndarray:
        body = {"inputs": [tensor("input", rows)]}
        answer = httpx.post(f"{server.url}/v2/models/flat/infer", json=body, timeout=20)
        assert answer.status_code == 200, answer.text
        return np.array(answer.json()["outputs"][0]["data"], np.float32)

    def config() -> dict[str, Any]:
        answer = httpx.get(f"{server.url}/v2/models/flat/config", timeout=5)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return {"max_batch_size": found["max_batch_size"],
                "dims": [t["dims"] for t in found["input"] + found["output"]]}  # fmt: skip

    try:
        before = config()
        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(call, requests))
        after = config()
    finally:
        assert server.stop() == 0
    for rows, answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer, rows.ravel())
    assert "requests are no longer batched" in server.logs()
    # What Triton's model config says of it changes with it: no batch dimension any more.
    assert before == {"max_batch_size": 32, "dims": [[4], []]}
    assert after == {"max_batch_size": 0, "dims": [[-1, 4], [-1]]}


def test_placeholder_dimension_names_are_not_constraints(tmp_path: Path) -> None:
    """Exporters write "?" (or unk__N) for unrelated unknown sizes; ONNX Runtime accepts x [1, 2]
    with y [1, 3] into a Concat, so the server must too."""
    graph = helper.make_graph(
        [helper.make_node("Concat", ["x", "y"], ["xy"], axis=1)],
        "concat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "?"]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "?"])],
        [helper.make_tensor_value_info("xy", TensorProto.FLOAT, ["N", "?"])],
    )  # fmt: skip
    path = tmp_path / "concat.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = Model.load(path, name="concat", version="1", sha256="-", options=SessionOptions())
    body = {"inputs": [tensor("x", np.ones((1, 2), np.float32)),
                       tensor("y", np.zeros((1, 3), np.float32))]}  # fmt: skip
    request = decode_v2(json.dumps(body).encode(), model)
    assert model.run(request.feeds)["xy"].tolist() == [[1, 1, 0, 0, 0]]


def test_drift_tracking_waits_for_rows_that_have_values() -> None:
    """An empty first request ([1, 0]) must not fix the tracked width at zero for good."""
    drift = DriftStats(8)
    drift.add({"x": np.ones((1, 0), np.float32)})
    for _ in range(3):
        drift.add({"x": np.full((4, 3), 2.0, np.float32)})
    drift.fold()
    assert drift.rows == {"x": 12}
    assert drift.sums["x"].tolist() == [24.0, 24.0, 24.0]


def save(graph: onnx.GraphProto, path: Path) -> Path:
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_an_input_without_shape_information_takes_any_shape(tmp_path: Path) -> None:
    """Some exports carry no shape for an input (rank unknown). ONNX Runtime reports its shape
    as [], as it does a scalar's, and the server took it for a scalar: every real request was
    a 400 ("expected shape [], got [2, 2]"). The rank is now told apart at load (ONNX Runtime
    refuses a wrong rank only for a declared one): any shape is taken, and the metadata says
    [-1]. A declared scalar still takes only []."""
    free = save(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "shapeless",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    ), tmp_path / "shapeless.onnx")  # fmt: skip
    scalar = save(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "scalar",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    ), tmp_path / "scalar.onnx")  # fmt: skip
    model = Model.load(free, name="shapeless", version="1", sha256="-", options=SessionOptions())
    body = {"inputs": [tensor("x", np.array([[1, -2], [-3, 4]], np.float32))]}
    request = decode_v2(json.dumps(body).encode(), model)
    assert model.run(request.feeds)["y"].tolist() == [[1, 0], [0, 4]]
    assert model.metadata()["inputs"][0]["shape"] == [-1]
    assert model.metadata()["outputs"][0]["shape"] == [-1]
    fixed = Model.load(scalar, name="scalar", version="1", sha256="-", options=SessionOptions())
    assert fixed.metadata()["inputs"][0]["shape"] == []
    with pytest.raises(BadRequestError, match=r"expected shape \[\], got \[2, 2\]"):
        decode_v2(json.dumps(body).encode(), fixed)
    one = {"inputs": [{"name": "x", "shape": [], "datatype": "FP32", "data": 3.0}]}
    assert fixed.run(decode_v2(json.dumps(one).encode(), fixed).feeds)["y"].tolist() == 3.0
