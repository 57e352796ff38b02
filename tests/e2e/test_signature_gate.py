"""The operator's signature gate on a real node: a rollout to an iris model whose input is
renamed is refused before it takes any traffic, v1 keeps answering, and `kubectl describe md`
says which input changed and how to roll it out anyway.

The operator is installed by its chart and v1 is the iris sample baked into the serving image,
as in test_rollout.py (its fixtures and helpers are reused); the renamed model comes from a
small in-cluster model store of its own.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import onnx
import pytest
from e2ekit import apply
from onnx import TensorProto, helper, numpy_helper

# The chart-installed operator, the sample model and the load client (crd and operator are
# fixtures, imported to be found).
from test_rollout import (  # noqa: F401
    V1,
    V1_LABELS,
    Load,
    crd,
    md,
    operator,
    serve,
    start_model_store,
    status,
    wait_for,
)  # fmt: skip


def iris_renamed() -> bytes:
    """The iris rules of v1's shape, but its input is called `features` instead of `input`:
    every client request that sends `input` would fail against it."""
    weights = np.array([[0, 0, 0], [0, 0, 0], [-10, 0, 0], [0, 0, 10]], dtype=np.float32)
    bias = np.array([24.5, 0.0, -17.5], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["features", "weights", "bias"], ["scores"]),
         helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
         helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0)],
        "iris",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def degraded(state: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in state.get("conditions", []) if c["type"] == "Degraded"), {})


@pytest.mark.usefixtures("operator")
def test_a_renamed_input_is_refused_and_v1_keeps_answering(cluster, namespace):
    store = start_model_store(cluster, namespace, {"iris-renamed.onnx": iris_renamed()},
                              name="renamed-models")  # fmt: skip
    url = serve(cluster, namespace, "iris", V1, "v1")
    with Load(cluster, namespace, url) as load:
        wait_for(lambda: load.codes[200] >= 20, "requests answered by v1")
        apply(cluster, namespace, md("iris", f"{store}/iris-renamed.onnx", "v2"))
        weights: set[int] = set()

        def refused() -> dict[str, Any] | None:
            state = status(cluster, namespace, "iris")
            weights.add(int(state.get("canaryWeight") or 0))
            return state if degraded(state).get("reason") == "IncompatibleSignature" else None

        state = wait_for(refused, "the signature gate's refusal", timeout=300)
        answered = load.codes[200]
        time.sleep(10)  # v1 goes on answering after the refusal
        assert load.codes[200] > answered
    assert weights == {0}, f"weights seen: {weights}"
    assert state["phase"] == "Failed"
    assert state["stableRevision"]["modelVersion"] == "v1"
    assert state["rolledBackRevision"]["modelVersion"] == "v2"
    assert "input input renamed to features" in degraded(state)["message"]
    assert set(load.codes) <= {200, 0, 503}, load.codes  # no request reached the renamed model
    assert tuple(V1_LABELS) in load.labels
    described = cluster.kubectl("describe", "md", "iris", "-n", namespace).stdout
    assert "IncompatibleSignature" in described
    assert "input input renamed to features" in described
    assert "allowSignatureChange: true" in described
