"""The operator's signature gate on a real node: a rollout to an iris model whose input is
renamed is refused before it takes any traffic, v1 keeps answering, and `kubectl describe md`
says which input changed and how to roll it out anyway.

The operator is installed by its chart and v1 is the iris sample baked into the serving image,
as in test_rollout.py (its fixtures and helpers are reused); the renamed model comes from a
small in-cluster model store of its own.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np
import onnx
import pytest
from e2ekit import ECHO_IMAGE, NON_ROOT, apply, kubectl_json, wait_for_endpoints
from onnx import TensorProto, helper, numpy_helper

# The chart-installed operator, the sample model and the load client (crd and operator are
# fixtures, imported to be found).
from test_rollout import V1, V1_LABELS, Load, crd, md, operator, serve, status, wait_for  # noqa: F401

import localkube


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


def start_renamed_store(cluster: localkube.Cluster, namespace: str) -> str:
    """An HTTP server in the cluster serving iris-renamed.onnx; its base URL."""
    labels = {"app": "renamed-models"}
    apply(cluster, namespace, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "renamed-models"},
        "binaryData": {"iris-renamed.onnx": base64.b64encode(iris_renamed()).decode()},
    }, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "renamed-models"},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{
                "name": "http", "image": ECHO_IMAGE, "imagePullPolicy": "Never",
                "command": ["python3", "-m", "http.server", "8000", "--directory", "/models"],
                "ports": [{"containerPort": 8000}], "securityContext": NON_ROOT,
                "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
            }], "securityContext": {"runAsUser": 65532},
                "volumes": [{"name": "models", "configMap": {"name": "renamed-models"}}]},
        }},
    }, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "renamed-models"},
        "spec": {"selector": labels, "ports": [{"port": 8000, "targetPort": 8000}]},
    })  # fmt: skip
    wait_for_endpoints(cluster, namespace, "renamed-models", 1)
    service = kubectl_json(cluster, "get", "service", "renamed-models", "-n", namespace)
    return f"http://{service['spec']['clusterIP']}:8000"


def degraded(state: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in state.get("conditions", []) if c["type"] == "Degraded"), {})


@pytest.mark.usefixtures("operator")
def test_a_renamed_input_is_refused_and_v1_keeps_answering(cluster, namespace):
    store = start_renamed_store(cluster, namespace)
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
