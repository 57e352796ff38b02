"""The node really runs pods: images built here, IPs on the pod network, Services through
kube-proxy, and `kubectl logs`, `exec` and `port-forward` through the kubelet.

The workload is hack/images/echo (a tiny HTTP server that answers with its pod's name), so these
tests prove the node itself; test_serving.py runs the serving image on top.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from e2ekit import (
    ECHO_IMAGE,
    NON_ROOT,
    apply,
    kubectl_json,
    port_forward,
    run_client_script,
    wait_for_endpoints,
)

import localkube

REPLICAS = 2
# Runs in a client pod: asks the Service N times, then the API server through the `kubernetes`
# Service with the pod's own token; prints one JSON line per answer.
CLIENT_SCRIPT = """
import json, os, ssl, sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    print(urlopen_retrying(url).read().decode(), flush=True)
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
api = "https://{KUBERNETES_SERVICE_HOST}:{KUBERNETES_SERVICE_PORT}/version".format(**os.environ)
req = urllib.request.Request(api, headers={"Authorization": "Bearer " + open(f"{sa}/token").read()})
print(json.dumps({"apiserver": json.load(urllib.request.urlopen(req, context=ctx, timeout=10))}))
"""


@dataclass(frozen=True)
class Echo:
    namespace: str
    cluster_ip: str
    pods: frozenset[str]


def echo_objects(name: str, image: str = ECHO_IMAGE) -> list[dict[str, Any]]:
    labels = {"app": name}
    container = {
        "name": "echo",
        "image": image,
        "imagePullPolicy": "Never",  # loaded into the node, never pulled
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1},
        "securityContext": NON_ROOT,
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": REPLICAS,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [container], "terminationGracePeriodSeconds": 2},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    ]


@pytest.fixture(scope="module")
def echo(cluster: localkube.Cluster) -> Iterator[Echo]:
    """Two echo pods behind a Service, in a namespace of their own for this module."""
    namespace = "e2e-node"
    cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true")
    cluster.kubectl("create", "namespace", namespace)
    wait_for_default_service_account(cluster, namespace)
    apply(cluster, namespace, *echo_objects("echo"))
    cluster.kubectl("rollout", "status", "-n", namespace, "deployment/echo", "--timeout=120s")
    wait_for_endpoints(cluster, namespace, "echo", REPLICAS)
    pods = kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", "app=echo")["items"]
    cluster_ip = kubectl_json(cluster, "get", "service", "echo", "-n", namespace)["spec"][
        "clusterIP"
    ]
    yield Echo(namespace, cluster_ip, frozenset(p["metadata"]["name"] for p in pods))
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def wait_for_default_service_account(cluster: localkube.Cluster, namespace: str) -> None:
    for _ in range(150):
        if not cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode:
            return
        time.sleep(0.2)
    pytest.fail(f"no default ServiceAccount in {namespace}")


def run_client(cluster: localkube.Cluster, namespace: str, name: str, *args: str) -> list[str]:
    return run_client_script(cluster, namespace, name, CLIENT_SCRIPT, *args)


def test_pods_run_with_ips_on_the_pod_network(cluster: localkube.Cluster, echo: Echo) -> None:
    pods = kubectl_json(cluster, "get", "pods", "-n", echo.namespace, "-l", "app=echo")["items"]
    assert len(pods) == REPLICAS
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == REPLICAS, ips
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"], status
        assert status["image"].endswith(ECHO_IMAGE), status["image"]


def test_service_balances_over_pods_seen_from_another_pod(
    cluster: localkube.Cluster, echo: Echo
) -> None:
    """A client pod reaches the Service's ClusterIP (kube-proxy's rules) and lands on both
    pods, and reaches the API server through the `kubernetes` Service with its own token."""
    lines = run_client(cluster, echo.namespace, "client", f"http://{echo.cluster_ip}/hello", "30")
    answers = [json.loads(line) for line in lines if line.startswith("{")]  # not retries
    echoed = [a for a in answers if "host" in a]
    assert len(echoed) == 30
    assert {a["path"] for a in echoed} == {"/hello"}
    # 30 tries over 2 endpoints chosen at random: one unseen has odds of 2 in a billion.
    assert {a["host"] for a in echoed} == echo.pods
    (api,) = (a["apiserver"] for a in answers if "apiserver" in a)
    assert api["major"] == "1"


def test_port_forward_reaches_a_pod(cluster: localkube.Cluster, echo: Echo) -> None:
    with (
        port_forward(cluster, echo.namespace, "service/echo:80") as base,
        urllib.request.urlopen(f"{base}/forwarded", timeout=10) as resp,
    ):
        answer = json.load(resp)
    assert answer["path"] == "/forwarded"
    assert answer["host"] in echo.pods


def test_exec_runs_in_the_container_as_non_root(cluster: localkube.Cluster, echo: Echo) -> None:
    pod = sorted(echo.pods)[0]
    out = cluster.kubectl(
        "exec", "-n", echo.namespace, pod, "--",
        "python3", "-c", "import os, socket; print(os.getuid(), socket.gethostname())",
    ).stdout.split()  # fmt: skip
    assert out == ["65532", pod]


def test_logs_show_the_requests(cluster: localkube.Cluster, echo: Echo) -> None:
    run_client(cluster, echo.namespace, "client-logs", f"http://{echo.cluster_ip}/logged", "6")
    logs = "".join(
        cluster.kubectl("logs", "-n", echo.namespace, pod).stdout for pod in sorted(echo.pods)
    )
    assert "listening on :8080" in logs
    assert logs.count('"GET /logged HTTP/1.1" 200') == 6
