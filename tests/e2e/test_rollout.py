"""Rollouts end to end on a real node: the operator, the serving image, the pods provider.

A ModelDeployment serves the iris sample baked into the serving image; new model versions come
from an in-cluster model store (a ConfigMap served over HTTP). Real requests flow through the
entry Service while the operator shifts weight, scrapes the revisions' pods through the API
server, judges, and promotes a good version or rolls a bad one back by itself.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from e2ekit import ECHO_IMAGE, NON_ROOT, SERVING_IMAGE, apply, kubectl_json, wait_for_endpoints
from onnx import TensorProto, helper, numpy_helper

import localkube

REPO = Path(__file__).resolve().parents[2]
V1 = "file:///opt/modelserve/models/iris-v1.onnx"
# Setosa, versicolor, virginica: one row each of the classic iris data.
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.5, 3.0, 5.8, 2.2]]
V1_LABELS = [0, 1, 2]
V2_LABELS = [0, 2, 2]  # v2 moves the virginica threshold: the versicolor row flips
INTERVAL = 5


# --- models ---------------------------------------------------------------------------------


def _model(nodes: list[Any], outputs: list[Any], inits: list[Any]) -> bytes:
    graph = helper.make_graph(
        nodes, "iris",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        outputs, inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def iris_v2() -> bytes:
    """The sample iris rules with virginica from petal width 1.3 cm instead of 1.75 cm."""
    weights = np.array([[0, 0, 0], [0, 0, 0], [-10, 0, 0], [0, 0, 10]], dtype=np.float32)
    bias = np.array([24.5, 0.0, -13.0], dtype=np.float32)
    return _model(
        [helper.make_node("Gemm", ["input", "weights", "bias"], ["scores"]),
         helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
         helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0)],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias")],
    )  # fmt: skip


def iris_broken() -> bytes:
    """Loads, warms up and answers the warm-up, then fails real rows: it looks a table up by
    the sum of a row's features, and iris rows sum far past the table's end."""
    table = numpy_helper.from_array(np.arange(5, dtype=np.int64), "table")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    return _model(
        [helper.make_node("ReduceSum", ["input", "axes"], ["total"], keepdims=0),
         helper.make_node("Cast", ["total"], ["index"], to=TensorProto.INT64),
         helper.make_node("Gather", ["table", "index"], ["label"])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])],
        [table, axes],
    )  # fmt: skip


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crd(cluster: localkube.Cluster) -> localkube.Cluster:
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/modeldeployments.modeldeploy.io")  # fmt: skip
    return cluster


class Operator:
    """`modeldeploy run` with the cluster's admin credentials, outside the cluster."""

    def __init__(self, cluster: localkube.Cluster, log: Path) -> None:
        self.cluster, self.log = cluster, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "MODELDEPLOY_RESYNC_SECONDS": "2",
            "MODELDEPLOY_SERVING_IMAGE": SERVING_IMAGE,
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "modeldeploy.cli", "run", "-A", "--liveness-port=0",
                 "--metrics-port=0"], env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def operator(
    crd: localkube.Cluster, available_images: set[str], tmp_path_factory
) -> Iterator[Operator]:
    if SERVING_IMAGE not in available_images:
        pytest.skip(f"the node has no {SERVING_IMAGE}")
    op = Operator(crd, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    yield op
    op.stop()


@pytest.fixture
def model_store(cluster: localkube.Cluster, namespace: str) -> str:
    return start_model_store(cluster, namespace)


def start_model_store(cluster: localkube.Cluster, namespace: str) -> str:
    """An HTTP server in the cluster with the test's models; returns its base URL."""
    files = {"iris-v2.onnx": iris_v2(), "iris-broken.onnx": iris_broken()}
    labels = {"app": "models"}
    apply(cluster, namespace, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "models"},
        "binaryData": {k: base64.b64encode(v).decode() for k, v in files.items()},
    }, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "models"},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{
                "name": "http", "image": ECHO_IMAGE, "imagePullPolicy": "Never",
                "command": ["python3", "-m", "http.server", "8000", "--directory", "/models"],
                "ports": [{"containerPort": 8000}], "securityContext": NON_ROOT,
                "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
            }], "securityContext": {"runAsUser": 65532},
                "volumes": [{"name": "models", "configMap": {"name": "models"}}]},
        }},
    }, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "models"},
        "spec": {"selector": labels, "ports": [{"port": 8000, "targetPort": 8000}]},
    })  # fmt: skip
    wait_for_endpoints(cluster, namespace, "models", 1)
    ip = kubectl_json(cluster, "get", "service", "models", "-n", namespace)["spec"]["clusterIP"]
    return f"http://{ip}:8000"


def md(name: str, uri: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": uri, "version": version},
            "serving": {"replicas": 2, "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}},
            "rollout": {
                "strategy": "Canary",
                "steps": [{"setWeight": 25, "pause": "10s"}, {"setWeight": 50, "pause": "10s"}],
                "analysis": {"interval": f"{INTERVAL}s", "minRequests": 20, "failureLimit": 2,
                             "metrics": [{"name": "error-rate", "max": 0.05},
                                         {"name": "latency-p99", "max": 1000}]},
            },
        },
    }  # fmt: skip


def status(cluster: localkube.Cluster, namespace: str, name: str) -> dict[str, Any]:
    return kubectl_json(cluster, "get", "md", name, "-n", namespace).get("status") or {}


def wait_for(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


class Load:
    """Steady requests to the entry Service (kube-proxy routes the node's own traffic too)."""

    def __init__(self, url: str, rate: float = 20) -> None:
        self.url, self.rate = url, rate
        self.codes: Counter[int] = Counter()
        self.labels: Counter[tuple[int, ...]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = json.dumps({"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32",
                                       "data": ROWS}]}).encode()  # fmt: skip
        deadline = time.monotonic() + 600  # bounded, whatever happens to the test
        while not self._stop.is_set() and time.monotonic() < deadline:
            headers = {"Content-Type": "application/json"}
            request = urllib.request.Request(self.url, data=body, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = json.load(response)
                    self.codes[response.status] += 1
                    label = next(o for o in answer["outputs"] if o["name"] == "label")
                    self.labels[tuple(label["data"])] += 1
            except urllib.error.HTTPError as err:
                self.codes[err.code] += 1
            except OSError:
                self.codes[0] += 1
            time.sleep(1 / self.rate)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def serve(cluster: localkube.Cluster, namespace: str, name: str, uri: str, version: str) -> str:
    """Apply, wait until Ready, return the inference URL of the entry Service."""
    apply(cluster, namespace, md(name, uri, version))
    cluster.kubectl("wait", "--for=condition=Ready", f"md/{name}", "-n", namespace,
                    "--timeout=180s")  # fmt: skip
    ip = kubectl_json(cluster, "get", "service", name, "-n", namespace)["spec"]["clusterIP"]
    return f"http://{ip}/v2/models/{name}/infer"


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("operator")
def test_a_good_version_walks_the_canary_steps_and_is_promoted(cluster, namespace, model_store):
    url = serve(cluster, namespace, "iris", V1, "v1")
    with Load(url) as load:
        wait_for(lambda: load.codes[200] >= 20, "requests answered by v1")
        apply(cluster, namespace, md("iris", f"{model_store}/iris-v2.onnx", "v2"))
        weights = set()

        def promoted() -> bool:
            s = status(cluster, namespace, "iris")
            weights.add(s.get("canaryWeight", 0))
            return (s.get("stableRevision") or {}).get("modelVersion") == "v2"

        wait_for(promoted, "v2 promoted", timeout=240)
        time.sleep(3)
    assert {25, 50} <= weights, f"weights seen: {weights}"
    assert tuple(V2_LABELS) in load.labels  # v2 answered through the entry Service
    assert load.codes[200] > 0
    assert set(load.codes) <= {200, 0, 503}, load.codes  # at most brief overload or drain
    s = status(cluster, namespace, "iris")
    assert s["phase"] == "Healthy"
    assert [h["event"] for h in s["history"]][-1] == "Promoted"
    passed = [c for c in s.get("analysis", {}).get("checks", []) if c["verdict"] == "Passed"]
    assert passed == [] or all(r["requests"] >= 20 for c in passed for r in c["results"][:1])


@pytest.mark.usefixtures("operator")
def test_a_broken_version_is_rolled_back_by_its_metrics(cluster, namespace, model_store):
    url = serve(cluster, namespace, "iris", V1, "v1")
    with Load(url) as load:
        wait_for(lambda: load.codes[200] >= 20, "requests answered by v1")
        apply(cluster, namespace, md("iris", f"{model_store}/iris-broken.onnx", "v3"))
        first_traffic = wait_for(
            lambda: status(cluster, namespace, "iris").get("canaryWeight", 0) > 0 and time.time(),
            "traffic on the canary",
        )  # fmt: skip
        wait_for(lambda: status(cluster, namespace, "iris").get("phase") == "RolledBack",
                 "an automatic rollback", timeout=180)  # fmt: skip
        rolled_back_after = time.time() - first_traffic
        time.sleep(INTERVAL)  # requests already on their way to the canary may still fail
        errors_then = sum(n for code, n in load.codes.items() if code >= 500)
        time.sleep(2 * INTERVAL)
        errors_later = sum(n for code, n in load.codes.items() if code >= 500)
    s = status(cluster, namespace, "iris")
    assert s["stableRevision"]["modelVersion"] == "v1"
    assert s["rolledBackRevision"]["modelVersion"] == "v3"
    assert s["canaryWeight"] == 0
    canary = s["rolledBackRevision"]["name"]
    assert kubectl_json(cluster, "get", "deploy", canary, "-n", namespace)["spec"]["replicas"] == 0
    assert errors_later == errors_then, "errors went on after the rollback"
    failed = [c for c in s["analysis"]["checks"] if c["verdict"] == "Failed"]
    assert len(failed) == 2  # failureLimit
    error_rate = next(r for r in failed[-1]["results"] if r["metric"] == "error-rate")
    assert error_rate["verdict"] == "Failed"
    assert error_rate["canaryValue"] > 0.05
    described = cluster.kubectl("describe", "md", "iris", "-n", namespace).stdout
    assert "rolled back: analysis failed: error-rate=" in described
    print(f"\nrolled back {rolled_back_after:.0f}s after the canary's first traffic "
          f"({rolled_back_after / INTERVAL:.1f} intervals of {INTERVAL}s)")  # fmt: skip


@pytest.mark.usefixtures("operator")
def test_deleting_the_modeldeployment_removes_everything(cluster, namespace):
    serve(cluster, namespace, "iris", V1, "v1")
    cluster.kubectl("delete", "md", "iris", "-n", namespace)
    selector = "modeldeploy.io/deployment=iris"
    wait_for(lambda: not kubectl_json(cluster, "get", "deploy,svc,pdb,pods", "-n", namespace,
                                      "-l", selector)["items"], "everything gone")  # fmt: skip


def test_an_operator_restarted_mid_rollout_continues_at_the_same_step(
    cluster, namespace, model_store, operator
):
    url = serve(cluster, namespace, "iris", V1, "v1")
    doc = md("iris", f"{model_store}/iris-v2.onnx", "v2")
    doc["spec"]["rollout"]["steps"] = [{"setWeight": 25, "pause": "10s"},
                                       {"setWeight": 50, "pause": "30s"}]  # fmt: skip
    with Load(url):
        apply(cluster, namespace, doc)
        wait_for(lambda: status(cluster, namespace, "iris").get("currentStep") == 1,
                 "the second step", timeout=180)  # fmt: skip
        operator.stop()
        before = status(cluster, namespace, "iris")
        time.sleep(2 * INTERVAL)  # the rollout state is in the status, not in the process
        operator.start()
        time.sleep(INTERVAL)
        after = status(cluster, namespace, "iris")
        assert after["currentStep"] == 1
        assert after["stepStartedAt"] == before["stepStartedAt"]
        assert after["canaryRevision"] == before["canaryRevision"]
        wait_for(lambda: (status(cluster, namespace, "iris").get("stableRevision") or {}).get(
            "modelVersion") == "v2", "v2 promoted after the restart", timeout=180)  # fmt: skip
