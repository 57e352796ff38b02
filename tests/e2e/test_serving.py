"""The serving image runs in a pod with a small model (the iris sample baked into the image) and
answers inference requests through a Service from another pod, and through port-forward.

Skipped when the node has no serving image (serving_image/Dockerfile absent or not loaded).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from e2ekit import (
    NON_ROOT,
    SERVING_IMAGE,
    apply,
    kubectl_json,
    port_forward,
    run_client_script,
    wait_for_endpoints,
)

import localkube

MODEL_URI = "file:///opt/modelserve/models/iris-v1.onnx"
MODEL = "iris-v1"
# Setosa, versicolor, virginica: the sample model's three classes, one row each.
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.5, 3.0, 5.8, 2.2]]
REQUEST = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": ROWS}]}
INFER_SCRIPT = """
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(),
                             headers={"Content-Type": "application/json"})
print(urlopen_retrying(req, timeout=30).read().decode())
"""


@pytest.fixture
def serving(cluster: localkube.Cluster, namespace: str, available_images: set[str]) -> str:
    if SERVING_IMAGE not in available_images:
        pytest.skip(f"the node has no {SERVING_IMAGE} (serving_image/Dockerfile not built)")
    labels = {"app": "iris"}
    container = {
        "name": "server",
        "image": SERVING_IMAGE,
        "imagePullPolicy": "Never",
        "env": [{"name": "MODELSERVE_MODEL", "value": MODEL_URI}],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": 8080},
            "periodSeconds": 1,
        },
        "securityContext": NON_ROOT,
    }
    apply(
        cluster,
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "iris", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "iris"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    rollout = cluster.kubectl(
        "rollout", "status", "-n", namespace, "deployment/iris", "--timeout=180s", check=False
    )
    if rollout.returncode != 0:
        logs = cluster.kubectl("logs", "-n", namespace, "deployment/iris", check=False)
        pytest.fail(f"serving pod not ready: {rollout.stderr}\n{logs.stdout}{logs.stderr}")
    wait_for_endpoints(cluster, namespace, "iris", 1)
    service = kubectl_json(cluster, "get", "service", "iris", "-n", namespace)
    return f"http://{service['spec']['clusterIP']}"


def labels_of(answer: dict[str, Any]) -> list[int]:
    (label,) = (o for o in answer["outputs"] if o["name"] == "label")
    return [int(x) for x in label["data"]]


def test_inference_through_a_service_from_another_pod(
    cluster: localkube.Cluster, namespace: str, serving: str
) -> None:
    url = f"{serving}/v2/models/{MODEL}/infer"
    lines = run_client_script(cluster, namespace, "infer", INFER_SCRIPT, url, json.dumps(REQUEST))
    assert labels_of(json.loads(lines[-1])) == [0, 1, 2]


@pytest.mark.usefixtures("serving")
def test_inference_through_port_forward(cluster: localkube.Cluster, namespace: str) -> None:
    with port_forward(cluster, namespace, "service/iris:80") as base:
        with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=10) as resp:
            assert resp.status == 200
        req = urllib.request.Request(
            f"{base}/v2/models/{MODEL}/infer",
            data=json.dumps(REQUEST).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.load(resp)
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
    assert labels_of(answer) == [0, 1, 2]
    assert "# TYPE" in metrics
