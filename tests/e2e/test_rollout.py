"""Rollouts end to end on a real node: the operator installed by its Helm chart, the serving
image, the pods provider.

A ModelDeployment serves the iris sample baked into the serving image; new model versions come
from an in-cluster model store (a ConfigMap served over HTTP). Real requests flow through the
entry Service while the operator shifts weight, scrapes the revisions' pods through the API
server, judges, and promotes a good version or rolls a bad one back by itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from e2ekit import (
    ECHO_IMAGE,
    NON_ROOT,
    SERVING_IMAGE,
    apply,
    has_cluster_dns,
    kubectl_json,
    wait_for_endpoints,
)
from onnx import TensorProto, helper, numpy_helper

import localkube
from healthkit import HealthLog, argocd_health, kstatus_health

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
    the sum of a row's features, and iris rows sum far past the table's end. Its signature is
    v1's (label and probabilities), so the operator's signature gate lets it through and only
    its metrics (or a hook) can catch it."""
    table = numpy_helper.from_array(np.arange(5, dtype=np.int64), "table")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    weights = numpy_helper.from_array(np.zeros((4, 3), dtype=np.float32), "weights")
    bias = numpy_helper.from_array(np.zeros(3, dtype=np.float32), "bias")
    return _model(
        [helper.make_node("ReduceSum", ["input", "axes"], ["total"], keepdims=0),
         helper.make_node("Cast", ["total"], ["index"], to=TensorProto.INT64),
         helper.make_node("Gather", ["table", "index"], ["label"]),
         helper.make_node("Gemm", ["input", "weights", "bias"], ["scores"]),
         helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1)],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        [table, axes, weights, bias],
    )  # fmt: skip


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crd(cluster: localkube.Cluster) -> localkube.Cluster:
    # --force-conflicts: an earlier module's `helm install` may own the CRD's fields by now.
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.wait_established("modeldeployments.modeldeploy.io")
    return cluster


OPERATOR_IMAGE = "modeldeploy/operator:dev"
OPERATOR_NAMESPACE = "modeldeploy-e2e"
OPERATOR_SELECTOR = "app.kubernetes.io/name=modeldeploy"


class Operator:
    """The operator as platform teams run it: `helm install` of charts/modeldeploy, its pod in
    the cluster on the chart's own ServiceAccount and RBAC."""

    def __init__(self, cluster: localkube.Cluster) -> None:
        self.cluster = cluster
        helm = subprocess.run([str(REPO / "hack" / "helm.sh")], capture_output=True, text=True,
                              check=True)  # fmt: skip
        self.helm = helm.stdout.strip().splitlines()[-1]

    def _helm(self, *args: str) -> None:
        proc = subprocess.run(
            [self.helm, *args, "--namespace", OPERATOR_NAMESPACE,
             "--kubeconfig", str(self.cluster.kubeconfig)],
            capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.fail(f"helm {args[0]} failed:\n{proc.stdout}\n{proc.stderr}")

    def install(self) -> None:
        # --force-conflicts: the CRD fixture applied the same CRD first; helm takes it over.
        chart = str(REPO / "charts" / "modeldeploy")
        self._helm("upgrade", "--install", "modeldeploy", chart, "--create-namespace", "--wait",
                   "--timeout", "5m", "--force-conflicts", "--set", "operator.resyncSeconds=2",
                   "--set", "operator.logFormat=plain")  # fmt: skip

    def uninstall(self) -> None:
        self._helm("uninstall", "modeldeploy", "--wait", "--timeout", "2m")

    def pods(self) -> list[dict[str, Any]]:
        return list(kubectl_json(self.cluster, "get", "pods", "-n", OPERATOR_NAMESPACE,
                                 "-l", OPERATOR_SELECTOR)["items"])  # fmt: skip

    def ready_pod(self) -> str | None:
        """The one operator pod that is Ready and not going away, if there is one."""
        ready = [
            p["metadata"]["name"] for p in self.pods()
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions") or [])
        ]  # fmt: skip
        return ready[0] if len(ready) == 1 else None

    def logs(self) -> str:
        return self.cluster.kubectl("logs", "-n", OPERATOR_NAMESPACE, "-l", OPERATOR_SELECTOR,
                                    "--tail=200", check=False).stdout  # fmt: skip


@pytest.fixture(scope="module")
def operator(crd: localkube.Cluster, available_images: set[str]) -> Iterator[Operator]:
    for image in (SERVING_IMAGE, OPERATOR_IMAGE):
        if image not in available_images:
            pytest.skip(f"the node has no {image}")
    op = Operator(crd)
    op.install()
    yield op
    print(op.logs(), file=sys.stderr)  # shown when a test failed
    op.uninstall()


@pytest.fixture
def model_store(cluster: localkube.Cluster, namespace: str) -> str:
    return start_model_store(cluster, namespace)


def start_model_store(
    cluster: localkube.Cluster,
    namespace: str,
    files: dict[str, bytes] | None = None,
    name: str = "models",
) -> str:
    """An HTTP server in the cluster serving `files` (default: the rollout tests' models) from
    a ConfigMap; returns its base URL."""
    files = files or {"iris-v2.onnx": iris_v2(), "iris-broken.onnx": iris_broken()}
    labels = {"app": name}
    apply(cluster, namespace, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
        "binaryData": {k: base64.b64encode(v).decode() for k, v in files.items()},
    }, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{
                "name": "http", "image": ECHO_IMAGE, "imagePullPolicy": "Never",
                "command": ["python3", "-m", "http.server", "8000", "--directory", "/models"],
                "ports": [{"containerPort": 8000}], "securityContext": NON_ROOT,
                "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
            }], "securityContext": {"runAsUser": 65532},
                "volumes": [{"name": "models", "configMap": {"name": name}}]},
        }},
    }, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": labels, "ports": [{"port": 8000, "targetPort": 8000}]},
    })  # fmt: skip
    wait_for_endpoints(cluster, namespace, name, 1)
    ip = kubectl_json(cluster, "get", "service", name, "-n", namespace)["spec"]["clusterIP"]
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


@pytest.fixture
def health() -> HealthLog:
    """Flux's kstatus and the chart's Argo CD Lua check, run on each phase a test's object
    passes through (what a GitOps pipeline waiting on the rollout would have been told)."""
    return HealthLog(kstatus_health(), argocd_health())


def watched(
    cluster: localkube.Cluster, namespace: str, name: str, log: HealthLog
) -> dict[str, Any]:
    """The object's status, after showing the whole object to kstatus and Argo CD's check."""
    md = kubectl_json(cluster, "get", "md", name, "-n", namespace)
    log.see(md)
    return md.get("status") or {}


def wait_for(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


LOAD_SCRIPT = """
import json, sys, time, urllib.error, urllib.request
url, rate, rows = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
body = json.dumps({"inputs": [{"name": "input", "shape": [len(rows), 4], "datatype": "FP32",
                               "data": rows}]}).encode()
codes, labels, printed = {}, {}, 0.0
deadline = time.monotonic() + 600  # bounded, whatever happens to the test
while time.monotonic() < deadline:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.load(response)
            code = response.status
            label = next(o for o in answer["outputs"] if o["name"] == "label")["data"]
            labels[json.dumps(label)] = labels.get(json.dumps(label), 0) + 1
    except urllib.error.HTTPError as err:
        code = err.code
    except OSError:
        code = 0
    codes[code] = codes.get(code, 0) + 1
    if time.monotonic() - printed > 0.5:
        print(json.dumps({"codes": codes, "labels": labels}), flush=True)
        printed = time.monotonic()
    time.sleep(1 / rate)
"""


class Load:
    """Steady requests to the entry Service from a pod in the cluster, so kube-proxy spreads
    them over the revisions' pods as it would any client's (and the suite needs nothing but a
    kubeconfig: on kind the host cannot reach a ClusterIP). Counts are read from its log."""

    def __init__(
        self, cluster: localkube.Cluster, namespace: str, url: str, rate: float = 20,
        name: str = "load",
    ) -> None:  # fmt: skip
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.pod = {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "load", "image": ECHO_IMAGE, "imagePullPolicy": "Never",
                "command": ["python3", "-c", LOAD_SCRIPT, url, str(rate), json.dumps(ROWS)],
                "securityContext": NON_ROOT,
            }]},
        }  # fmt: skip
        self._final: dict[str, dict[str, int]] | None = None

    def _counts(self) -> dict[str, dict[str, int]]:
        if self._final is not None:
            return self._final
        logs = self.cluster.kubectl("logs", "-n", self.namespace, self.name, "--tail=1",
                                    check=False).stdout.strip()  # fmt: skip
        try:
            return dict(json.loads(logs)) if logs else {}
        except json.JSONDecodeError:
            return {}

    @property
    def codes(self) -> Counter[int]:
        return Counter({int(k): v for k, v in self._counts().get("codes", {}).items()})

    @property
    def labels(self) -> Counter[tuple[int, ...]]:
        found = self._counts().get("labels", {})
        return Counter({tuple(json.loads(k)): v for k, v in found.items()})

    def __enter__(self) -> Load:
        apply(self.cluster, self.namespace, self.pod)
        return self

    def __exit__(self, *exc: object) -> None:
        self._final = self._counts()  # what the tests read after the pod is gone
        self.cluster.kubectl("delete", "pod", self.name, "-n", self.namespace, "--wait=false",
                             "--ignore-not-found")  # fmt: skip

    def answers(self) -> tuple[int, int]:
        """Answers (v1, v2) so far, told apart by the label the versicolor row gets."""
        labels = self.labels
        return labels[tuple(V1_LABELS)], labels[tuple(V2_LABELS)]


def serve(cluster: localkube.Cluster, namespace: str, name: str, uri: str, version: str,
          doc: dict[str, Any] | None = None) -> str:  # fmt: skip
    """Apply, wait until Ready, return the inference URL of the entry Service."""
    apply(cluster, namespace, doc or md(name, uri, version))
    cluster.kubectl("wait", "--for=condition=Ready", f"md/{name}", "-n", namespace,
                    "--timeout=180s")  # fmt: skip
    ip = kubectl_json(cluster, "get", "service", name, "-n", namespace)["spec"]["clusterIP"]
    return f"http://{ip}/v2/models/{name}/infer"


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("operator")
def test_a_good_version_walks_the_canary_steps_and_is_promoted(
    cluster, namespace, model_store, health
):
    url = serve(cluster, namespace, "iris", V1, "v1")
    with Load(cluster, namespace, url) as load:
        wait_for(lambda: load.codes[200] >= 20, "requests answered by v1")
        watched(cluster, namespace, "iris", health)
        apply(cluster, namespace, md("iris", f"{model_store}/iris-v2.onnx", "v2"))
        weights = set()

        def promoted() -> bool:
            s = watched(cluster, namespace, "iris", health)
            weights.add(s.get("canaryWeight", 0))
            return (s.get("stableRevision") or {}).get("modelVersion") == "v2"

        wait_for(promoted, "v2 promoted", timeout=240)
        wait_for(lambda: watched(cluster, namespace, "iris", health).get("phase") == "Healthy",
                 "Healthy after the promotion")  # fmt: skip
        time.sleep(3)
    assert {25, 50} <= weights, f"weights seen: {weights}"
    # What a GitOps pipeline waiting on this rollout was told at each step of it.
    print(f"\n{health.table()}")
    assert health.wrong() == [], health.table()
    assert {"Healthy", "Progressing"} <= health.phases, health.table()
    assert health.readings[-1][2]["status"] == "Current"
    assert tuple(V2_LABELS) in load.labels  # v2 answered through the entry Service
    assert load.codes[200] > 0
    assert set(load.codes) <= {200, 0, 503}, load.codes  # at most brief overload or drain
    s = status(cluster, namespace, "iris")
    assert s["phase"] == "Healthy"
    assert [h["event"] for h in s["history"]][-1] == "Promoted"
    passed = [c for c in s.get("analysis", {}).get("checks", []) if c["verdict"] == "Passed"]
    assert passed == [] or all(r["requests"] >= 20 for c in passed for r in c["results"][:1])


@pytest.mark.usefixtures("operator")
def test_a_broken_version_is_rolled_back_by_its_metrics(cluster, namespace, model_store, health):
    url = serve(cluster, namespace, "iris", V1, "v1")
    with Load(cluster, namespace, url) as load:
        wait_for(lambda: load.codes[200] >= 20, "requests answered by v1")
        apply(cluster, namespace, md("iris", f"{model_store}/iris-broken.onnx", "v3"))
        first_traffic = wait_for(
            lambda: watched(cluster, namespace, "iris", health).get("canaryWeight", 0) > 0
            and time.time(),
            "traffic on the canary",
        )  # fmt: skip
        wait_for(lambda: watched(cluster, namespace, "iris", health).get("phase") == "RolledBack",
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
    # v1 serves again (Ready), yet a pipeline waiting on v3 must hear that it failed.
    watched(cluster, namespace, "iris", health)
    print(f"\n{health.table()}")
    assert health.wrong() == [], health.table()
    assert {"Progressing", "RolledBack"} <= health.phases, health.table()
    assert (health.readings[-1][2]["status"], health.readings[-1][3]["status"]) == (
        "Failed", "Degraded"
    )  # fmt: skip
    print(f"\nrolled back {rolled_back_after:.0f}s after the canary's first traffic "
          f"({rolled_back_after / INTERVAL:.1f} intervals of {INTERVAL}s)")  # fmt: skip


@pytest.mark.usefixtures("operator")
def test_deleting_the_modeldeployment_removes_everything(cluster, namespace):
    serve(cluster, namespace, "iris", V1, "v1")
    cluster.kubectl("delete", "md", "iris", "-n", namespace)
    selector = "modeldeploy.io/deployment=iris"
    wait_for(lambda: not kubectl_json(cluster, "get", "deploy,svc,pdb,pods", "-n", namespace,
                                      "-l", selector)["items"], "everything gone")  # fmt: skip


def test_an_operator_pod_deleted_mid_rollout_is_replaced_and_continues_at_the_same_step(
    cluster, namespace, model_store, operator
):
    url = serve(cluster, namespace, "iris", V1, "v1")
    doc = md("iris", f"{model_store}/iris-v2.onnx", "v2")
    doc["spec"]["rollout"]["steps"] = [{"setWeight": 25, "pause": "10s"},
                                       {"setWeight": 50, "pause": "60s"}]  # fmt: skip
    with Load(cluster, namespace, url):
        apply(cluster, namespace, doc)
        wait_for(lambda: status(cluster, namespace, "iris").get("currentStep") == 1,
                 "the second step", timeout=180)  # fmt: skip
        old_pod = operator.ready_pod()
        assert old_pod, "one Ready operator pod"
        before = status(cluster, namespace, "iris")
        cluster.kubectl("delete", "pod", old_pod, "-n", OPERATOR_NAMESPACE, "--wait=false")
        new_pod = wait_for(lambda: (p := operator.ready_pod()) != old_pod and p,
                           "a new Ready operator pod", timeout=120)  # fmt: skip
        time.sleep(2 * INTERVAL)  # the new pod has reconciled: the state is in the status
        after = status(cluster, namespace, "iris")
        assert after["currentStep"] == 1, f"{new_pod} went from step 1 to {after['currentStep']}"
        assert after["stepStartedAt"] == before["stepStartedAt"]
        # The same revision and model (its pod counts and digest may have moved on meanwhile).
        same = ("name", "modelVersion", "modelUri")
        assert {k: after["canaryRevision"].get(k) for k in same} == {
            k: before["canaryRevision"].get(k) for k in same
        }
        try:
            wait_for(lambda: (status(cluster, namespace, "iris").get("stableRevision") or {}).get(
                "modelVersion") == "v2", "v2 promoted by the new pod", timeout=180)  # fmt: skip
        finally:
            print(json.dumps(status(cluster, namespace, "iris"), indent=1), file=sys.stderr)
            print(cluster.kubectl("describe", "md", "iris", "-n", namespace).stdout,
                  file=sys.stderr)  # fmt: skip


def blue_green(uri: str, version: str) -> dict[str, Any]:
    doc = md("iris", uri, version)
    doc["spec"]["rollout"] = {
        "strategy": "BlueGreen",
        "analysis": {"interval": f"{INTERVAL}s", "iterations": 2, "minRequests": 20,
                     "failureLimit": 2, "metrics": [{"name": "error-rate", "max": 0.05}]},
    }  # fmt: skip
    return doc


def service_url(cluster: localkube.Cluster, namespace: str, service: str) -> str:
    ip = kubectl_json(cluster, "get", "service", service, "-n", namespace)["spec"]["clusterIP"]
    return f"http://{ip}/v2/models/iris/infer"


def ready_pods(cluster: localkube.Cluster, namespace: str, deployment: str) -> int:
    found = kubectl_json(cluster, "get", "deploy", deployment, "-n", namespace)
    return int(found.get("status", {}).get("readyReplicas") or 0)


@pytest.mark.usefixtures("operator")
def test_blue_green_preview_gets_no_live_request_then_all_of_them(cluster, namespace, model_store):
    """Issue 14: under the default replicaRatio routing the entry Service used to select the
    candidate's pods too (58 of 116 live requests answered by v2 during the preview), and
    quiet checks promoted it."""
    url = serve(cluster, namespace, "iris", V1, "v1", blue_green(V1, "v1"))
    with Load(cluster, namespace, url) as live:
        wait_for(lambda: live.codes[200] >= 20, "requests answered by v1")
        apply(cluster, namespace, blue_green(f"{model_store}/iris-v2.onnx", "v2"))
        candidate = wait_for(
            lambda: (status(cluster, namespace, "iris").get("canaryRevision") or {}).get("name"),
            "the candidate revision",
        )  # fmt: skip
        wait_for(lambda: ready_pods(cluster, namespace, candidate) == 2, "the candidate Ready")
        time.sleep(4 * INTERVAL)  # checks run, all quiet: the candidate waits, unreached
        v1_preview, v2_preview = live.answers()
        assert v2_preview == 0, f"{v2_preview} live requests answered by the candidate"
        assert v1_preview > 0
        s = status(cluster, namespace, "iris")
        assert (s.get("canaryRevision") or {}).get("name") == candidate, "promoted on silence"
        progressing = next(c for c in s["conditions"] if c["type"] == "Progressing")
        assert progressing["reason"] == "AwaitingVerification", progressing
        assert s["canaryWeight"] == 0
        assert s["previewUrl"] == f"http://iris-canary.{namespace}.svc/v2/models/iris"
        with Load(cluster, namespace, service_url(cluster, namespace, "iris-canary"),
                  name="preview") as preview:  # fmt: skip
            wait_for(
                lambda: (
                    (status(cluster, namespace, "iris").get("stableRevision") or {}).get(
                        "modelVersion"
                    )
                    == "v2"
                ),
                "v2 promoted on the preview's traffic",
                timeout=120,
            )
            time.sleep(3)  # kube-proxy follows the entry Service's new selector
            v1_switch, v2_switch = live.answers()
            time.sleep(2 * INTERVAL)
            v1_after, v2_after = live.answers()
    assert preview.answers()[0] == 0  # the preview reaches the candidate only...
    assert preview.answers()[1] > 0
    assert v1_after == v1_switch, "v1 still answered live requests after the switch"
    assert v2_after > v2_switch  # ...and after the switch every live request is v2's
    assert set(live.codes) == {200}, live.codes
    history = status(cluster, namespace, "iris")["history"]
    assert "checks passed on real traffic" in history[-1]["message"]
    print(f"\npreview: v1 {v1_preview}, v2 {v2_preview} live answers; after the switch: "
          f"v1 +{v1_after - v1_switch}, v2 +{v2_after - v2_switch}")  # fmt: skip


SLOW_STORE = """
import http.server, sys, time
class Slow(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        time.sleep(float(sys.argv[1]))  # a large model: the pod is Ready this much later
        super().do_GET()
server = http.server.ThreadingHTTPServer(("", 8000), lambda *a: Slow(*a, directory="/models"))
server.serve_forever()
"""
SLOW_SECONDS = 12


def start_slow_store(cluster: localkube.Cluster, namespace: str) -> str:
    labels = {"app": "slow-models"}
    apply(cluster, namespace, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "slow-models"},
        "binaryData": {"iris-v2.onnx": base64.b64encode(iris_v2()).decode()},
    }, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "slow-models"},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{
                "name": "http", "image": ECHO_IMAGE, "imagePullPolicy": "Never",
                "command": ["python3", "-c", SLOW_STORE, str(SLOW_SECONDS)],
                "ports": [{"containerPort": 8000}], "securityContext": NON_ROOT,
                "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
            }], "securityContext": {"runAsUser": 65532},
                "volumes": [{"name": "models", "configMap": {"name": "slow-models"}}]},
        }},
    }, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "slow-models"},
        "spec": {"selector": labels, "ports": [{"port": 8000, "targetPort": 8000}]},
    })  # fmt: skip
    wait_for_endpoints(cluster, namespace, "slow-models", 1)
    ip = kubectl_json(cluster, "get", "service", "slow-models", "-n", namespace)["spec"][
        "clusterIP"]  # fmt: skip
    return f"http://{ip}:8000"


def immediate(uri: str, version: str) -> dict[str, Any]:
    doc = md("iris", uri, version)
    doc["spec"]["rollout"] = {"strategy": "Immediate"}
    return doc


def promoted_to(cluster: localkube.Cluster, namespace: str, version: str) -> Callable[[], bool]:
    def check() -> bool:
        s = status(cluster, namespace, "iris")
        ready = next((c for c in s.get("conditions", []) if c["type"] == "Ready"), {})
        return (s.get("stableRevision") or {}).get("modelVersion") == version and (
            ready.get("status") == "True" and s.get("phase") == "Healthy"
        )

    return check


@pytest.mark.usefixtures("operator")
def test_undo_under_load_loses_no_request_while_the_old_model_loads(cluster, namespace):
    """Issue 14: `undo` under replicaRatio scaled the current revision to 0 and the old one
    from 0 in the same plan: an outage as long as the old model takes to load."""
    slow = start_slow_store(cluster, namespace)
    url = serve(cluster, namespace, "iris", V1, "v1", immediate(V1, "v1"))
    apply(cluster, namespace, immediate(f"{slow}/iris-v2.onnx", "v2"))
    wait_for(promoted_to(cluster, namespace, "v2"), "v2 (slow to load) promoted", timeout=180)
    apply(cluster, namespace, immediate(V1, "v3"))  # v1's model again, as a new revision
    wait_for(promoted_to(cluster, namespace, "v3"), "v3 promoted", timeout=180)
    v2 = status(cluster, namespace, "iris")["previousRevision"]["name"]
    wait_for(lambda: ready_pods(cluster, namespace, v2) == 0, "v2 scaled to zero")
    with Load(cluster, namespace, url, rate=20) as load:
        wait_for(lambda: load.codes[200] >= 40, "requests answered by v3")
        asked = time.monotonic()
        undo = subprocess.run(
            [str(REPO / ".venv" / "bin" / "modeldeploy"), "undo", "iris", "-n", namespace,
             "--kubeconfig", str(cluster.kubeconfig)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert undo.returncode == 0, undo.stderr
        wait_for(lambda: ready_pods(cluster, namespace, v2) == 2, "v2 Ready again", timeout=120)
        loaded_after = time.monotonic() - asked
        wait_for(lambda: load.answers()[1] > 0, "v2 answering live requests", timeout=60)
        current = status(cluster, namespace, "iris")["previousRevision"]["name"]
        wait_for(lambda: ready_pods(cluster, namespace, current) == 0, "v3 scaled down")
        time.sleep(3)
    assert loaded_after >= 10, f"v2 was Ready {loaded_after:.0f}s after the undo"
    assert set(load.codes) == {200}, f"requests lost during the undo: {load.codes}"
    s = status(cluster, namespace, "iris")
    assert s["stableRevision"]["modelVersion"] == "v2"
    print(f"\nundo: v2 Ready {loaded_after:.0f}s later; {load.codes[200]} requests, all 200")


SMOKE_HOOK = """
import json, os, sys, urllib.request
url, want = sys.argv[1], json.loads(sys.argv[2])
print("checking", os.environ["MODELDEPLOY_CANARY_REVISION"], "through", url, flush=True)
body = json.dumps({"inputs": [{"name": "input", "shape": [len(json.loads(sys.argv[3])), 4],
                               "datatype": "FP32", "data": json.loads(sys.argv[3])}]}).encode()
for _ in range(20):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.load(response)
    except Exception as exc:
        print("failed:", exc, flush=True)
        sys.exit(1)
    label = next(o for o in answer["outputs"] if o["name"] == "label")["data"]
    if label != want:
        print("wrong answer:", label, flush=True)
        sys.exit(1)
print("20 right answers", flush=True)
"""


def hooked(uri: str, version: str, preview: str) -> dict[str, Any]:
    """BlueGreen verified by a prePromotion Job that asks the preview Service for 20 answers
    (the quiet checks alone would never promote: iterations 100)."""
    doc = blue_green(uri, version)
    doc["spec"]["rollout"]["analysis"]["iterations"] = 100
    doc["spec"]["rollout"]["hooks"] = {"prePromotion": [{"name": "smoke", "timeout": "60s", "job": {
        "template": {"spec": {"securityContext": {"runAsUser": 65532}, "containers": [{
            "name": "smoke", "image": ECHO_IMAGE, "imagePullPolicy": "Never",
            "command": ["python3", "-c", SMOKE_HOOK, preview, json.dumps(V2_LABELS),
                        json.dumps(ROWS)],
            "securityContext": NON_ROOT}]}}}}]}  # fmt: skip
    return doc


@pytest.mark.usefixtures("operator")
def test_a_pre_promotion_job_promotes_a_good_version_and_rolls_a_bad_one_back(
    cluster, namespace, model_store
):
    url = serve(cluster, namespace, "iris", V1, "v1", blue_green(V1, "v1"))
    # iris-canary exists only while a candidate does (a new ClusterIP each rollout): the Job's
    # pod, made once the candidate runs, gets its address from the Service environment
    # variables Kubernetes expands in a command, so no cluster DNS is needed.
    preview = "http://$(IRIS_CANARY_SERVICE_HOST)/v2/models/iris/infer"
    with Load(cluster, namespace, url) as live:
        wait_for(lambda: live.codes[200] >= 20, "requests answered by v1")
        apply(cluster, namespace, hooked(f"{model_store}/iris-broken.onnx", "v3", preview))
        wait_for(lambda: status(cluster, namespace, "iris").get("phase") == "RolledBack",
                 "the failing hook's rollback", timeout=180)  # fmt: skip
        s = status(cluster, namespace, "iris")
        assert s["rolledBackRevision"]["modelVersion"] == "v3"
        run = s["hooks"][-1]
        assert (run["phase"], run["name"], run["verdict"]) == ("prePromotion", "smoke", "Failed")
        described = cluster.kubectl("describe", "md", "iris", "-n", namespace).stdout
        assert "HookFailed" in described

        apply(cluster, namespace, hooked(f"{model_store}/iris-v2.onnx", "v2", preview))
        wait_for(promoted_to(cluster, namespace, "v2"), "v2 promoted by its hook", timeout=180)
        time.sleep(3)
    s = status(cluster, namespace, "iris")
    run = s["hooks"][-1]
    assert (run["phase"], run["verdict"]) == ("prePromotion", "Passed")
    assert run["revision"] == s["stableRevision"]["name"]
    assert "prePromotion hooks passed (smoke)" in s["history"][-1]["message"]
    assert set(live.codes) == {200}, live.codes  # the bad version never answered a client
    runs = [(r["revision"], r["verdict"], r.get("durationSeconds")) for r in s["hooks"]]
    print(f"\nhook runs: {runs}")


WEBHOOK_CHECKER = """
import http.server, json, sys, urllib.request
preview, want, rows = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
body = json.dumps({"inputs": [{"name": "input", "shape": [len(rows), 4], "datatype": "FP32",
                               "data": rows}]}).encode()

def right_answers(preview):
    for _ in range(20):
        request = urllib.request.Request(preview, data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                answer = json.load(response)
        except Exception as exc:
            return f"failed: {exc}"
        label = next(o for o in answer["outputs"] if o["name"] == "label")["data"]
        if label != want:
            return f"wrong answer: {label}"
    return ""

class Checker(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        told = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/notify":
            print("notified", told["event"], flush=True)
            code, said = 200, "ok"
        else:
            print("checking", told["candidateRevision"], "preview", told["previewUrl"], flush=True)
            said = right_answers(preview or told["previewUrl"] + "/infer")
            code, said = (500, said) if said else (200, "20 right answers")
            print(code, said, flush=True)
        self.send_response(code)
        self.send_header("Content-Length", str(len(said)))
        self.end_headers()
        self.wfile.write(said.encode())

http.server.ThreadingHTTPServer(("", 8000), Checker).serve_forever()
"""


def start_webhook_checker(cluster: localkube.Cluster, namespace: str, preview: str) -> str:
    """A webhook receiver in the cluster (the operator runs in its pod): POST /verify asks the
    preview for 20 answers and says 200 or 500; POST /notify prints the event it was told."""
    labels = {"app": "checker"}
    apply(cluster, namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "checker"},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{
                "name": "http", "image": ECHO_IMAGE, "imagePullPolicy": "Never",
                "command": ["python3", "-c", WEBHOOK_CHECKER, preview, json.dumps(V2_LABELS),
                            json.dumps(ROWS)],
                "ports": [{"containerPort": 8000}], "securityContext": NON_ROOT,
                "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
            }], "securityContext": {"runAsUser": 65532}},
        }},
    }, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "checker"},
        "spec": {"selector": labels, "ports": [{"port": 8000, "targetPort": 8000}]},
    })  # fmt: skip
    wait_for_endpoints(cluster, namespace, "checker", 1)
    ip = kubectl_json(cluster, "get", "service", "checker", "-n", namespace)["spec"]["clusterIP"]
    return f"http://{ip}:8000"


def webhooked(uri: str, version: str, checker: str) -> dict[str, Any]:
    """BlueGreen verified by a prePromotion webhook (iterations 100: quiet checks never
    promote), with a JSON notifier on the same receiver."""
    doc = blue_green(uri, version)
    doc["spec"]["rollout"]["analysis"]["iterations"] = 100
    doc["spec"]["rollout"]["hooks"] = {"prePromotion": [{"name": "checker", "timeout": "90s",
        "webhook": {"url": f"{checker}/verify", "timeout": "60s", "retries": 0}}]}  # fmt: skip
    doc["spec"]["rollout"]["notifications"] = [{"name": "audit", "url": f"{checker}/notify"}]
    return doc


@pytest.mark.usefixtures("operator")
def test_a_pre_promotion_webhook_promotes_a_good_version_and_rolls_a_bad_one_back(
    cluster, namespace, model_store
):
    if not has_cluster_dns(cluster):  # iris-canary exists only during a rollout: by its name
        pytest.skip("the checker reaches the preview by status.previewUrl: needs cluster DNS")
    url = serve(cluster, namespace, "iris", V1, "v1", blue_green(V1, "v1"))
    checker = start_webhook_checker(cluster, namespace, "")
    with Load(cluster, namespace, url) as live:
        wait_for(lambda: live.codes[200] >= 20, "requests answered by v1")
        apply(cluster, namespace, webhooked(f"{model_store}/iris-broken.onnx", "v3", checker))
        wait_for(lambda: status(cluster, namespace, "iris").get("phase") == "RolledBack",
                 "the failing webhook's rollback", timeout=180)  # fmt: skip
        s = status(cluster, namespace, "iris")
        assert s["rolledBackRevision"]["modelVersion"] == "v3"
        run = s["hooks"][-1]
        assert (run["phase"], run["name"], run["verdict"]) == ("prePromotion", "checker", "Failed")
        assert run["message"].startswith("HTTP 500: failed:"), run  # the preview's own 500

        apply(cluster, namespace, webhooked(f"{model_store}/iris-v2.onnx", "v2", checker))
        wait_for(promoted_to(cluster, namespace, "v2"), "v2 promoted by its webhook",
                 timeout=180)  # fmt: skip
        time.sleep(3)
    s = status(cluster, namespace, "iris")
    run = s["hooks"][-1]
    assert (run["phase"], run["verdict"]) == ("prePromotion", "Passed")
    assert run["message"].startswith("HTTP 200 in ")
    assert "prePromotion hooks passed (checker)" in s["history"][-1]["message"]
    assert set(live.codes) == {200}, live.codes  # the bad version never answered a client
    logs = cluster.kubectl("logs", "deploy/checker", "-n", namespace).stdout
    for event in ("RolloutStarted", "HookFailed", "RolledBack", "Promoted"):
        assert f"notified {event}" in logs, logs
    print(f"\nwebhook runs: {[(r['revision'], r['verdict'], r['message']) for r in s['hooks']]}")


@pytest.mark.usefixtures("operator")
def test_the_status_names_the_bytes_each_revision_served(cluster, namespace, model_store):
    """The digest each revision's pods verified (v2, pinned) or computed (v1, not), in the
    status, its history and `modeldeploy status`; each the digest the pods report themselves."""
    immediate = {"strategy": "Immediate"}
    doc = md("iris", V1, "v1")
    doc["spec"]["rollout"] = immediate
    serve(cluster, namespace, "iris", V1, "v1", doc)
    v1 = wait_for(lambda: (status(cluster, namespace, "iris").get("stableRevision") or {})
                  .get("modelSha256"), "v1's digest in the status")  # fmt: skip
    revision = status(cluster, namespace, "iris")["stableRevision"]["name"]
    pods = kubectl_json(cluster, "get", "pods", "-n", namespace,
                        "-l", f"modeldeploy.io/revision={revision}")["items"]  # fmt: skip
    assert pods
    for pod in pods:  # read past the operator: each pod's own word
        name = pod["metadata"]["name"]
        metrics = cluster.kubectl(
            "get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{name}:8080/proxy/metrics"
        ).stdout
        assert f'sha256="{v1}"' in metrics, name

    pin = hashlib.sha256(iris_v2()).hexdigest()
    doc = md("iris", f"{model_store}/iris-v2.onnx", "v2")
    doc["spec"]["rollout"] = immediate
    doc["spec"]["model"]["sha256"] = pin
    apply(cluster, namespace, doc)
    served = lambda: (status(cluster, namespace, "iris").get("stableRevision") or {}).get(  # noqa: E731
        "modelSha256"
    )
    wait_for(lambda: served() == pin, "v2's pinned digest in the status", timeout=180)
    s = status(cluster, namespace, "iris")
    assert s["previousRevision"]["modelSha256"] == v1
    lines = [(h["event"], h.get("modelVersion"), h.get("modelSha256")) for h in s["history"]]
    assert ("Deployed", "v1", v1) in lines, lines
    assert ("Promoted", "v2", pin) in lines, lines
    shown = subprocess.run(
        [sys.executable, "-m", "modeldeploy.cli", "status", "iris", "-n", namespace,
         f"--kubeconfig={cluster.kubeconfig}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert pin[:12] in shown.stdout
    assert v1[:12] in shown.stdout
    print(f"\nmodeldeploy status on the real node:\n{shown.stdout}")
