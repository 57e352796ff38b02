"""Helpers shared by the end-to-end tests: apply objects, run a client pod, port-forward."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

import localkube

ECHO_IMAGE = "modeldeploy/echo:dev"
SERVING_IMAGE = "modeldeploy/serving:dev"
NON_ROOT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


CLIENT_PRELUDE = """
import time, urllib.error, urllib.request
def urlopen_retrying(url, timeout=10, **kwargs):
    deadline = time.monotonic() + 30
    while True:
        try:
            return urllib.request.urlopen(url, timeout=timeout, **kwargs)
        except urllib.error.URLError as err:
            if isinstance(err, urllib.error.HTTPError) or time.monotonic() > deadline:
                raise
            print(f"retrying after {err}", file=__import__("sys").stderr, flush=True)
            time.sleep(0.5)
"""


def kubectl_json(cluster: localkube.Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def apply(cluster: localkube.Cluster, namespace: str, *objects: dict[str, Any]) -> None:
    manifest = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def run_client_script(
    cluster: localkube.Cluster,
    namespace: str,
    name: str,
    script: str,
    *args: str,
    timeout: float = 120,
    node: str | None = None,
) -> list[str]:
    """Run a Python script in a pod of the echo image until it exits; return its log lines
    (read with `kubectl logs`). The script can call `urlopen_retrying(url_or_request)`, which
    retries refused connections for 30s: kube-proxy programs a new endpoint a moment after the
    EndpointSlice lists it, and until then a Service refuses connections. With node, the pod
    runs on that node (a control plane's taints tolerated), so a test can say where its
    traffic starts."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "client",
                    "image": ECHO_IMAGE,
                    "imagePullPolicy": "Never",  # loaded into the node, never pulled
                    "command": ["python3", "-c", CLIENT_PRELUDE + script, *args],
                    "securityContext": NON_ROOT,
                }
            ],
        },
    }
    if node:
        pod["spec"]["nodeName"] = node
        pod["spec"]["tolerations"] = [{"operator": "Exists"}]
    apply(cluster, namespace, pod)
    deadline = time.monotonic() + timeout
    phase = ""
    while phase not in {"Succeeded", "Failed"} and time.monotonic() < deadline:
        time.sleep(0.5)
        phase = kubectl_json(cluster, "get", "pod", "-n", namespace, name)["status"]["phase"]
    logs = cluster.kubectl("logs", "-n", namespace, name, check=False)
    if phase != "Succeeded":
        status = kubectl_json(cluster, "get", "pod", "-n", namespace, name)["status"]
        pytest.fail(f"client pod {phase or 'stuck'}: {status}\nlogs:\n{logs.stdout}{logs.stderr}")
    return logs.stdout.splitlines()


def wait_for_endpoints(
    cluster: localkube.Cluster, namespace: str, service: str, count: int, timeout: float = 60
) -> None:
    """Wait until the Service's EndpointSlices list count ready endpoints."""
    deadline = time.monotonic() + timeout
    ready = 0
    while time.monotonic() < deadline:
        slices = kubectl_json(
            cluster, "get", "endpointslices", "-n", namespace,
            "-l", f"kubernetes.io/service-name={service}",
        )["items"]  # fmt: skip
        ready = sum(
            1
            for s in slices
            for e in s.get("endpoints") or []
            if e.get("conditions", {}).get("ready")
        )
        if ready >= count:
            return
        time.sleep(0.5)
    pytest.fail(f"service {namespace}/{service}: {ready} of {count} endpoints ready")


@contextlib.contextmanager
def port_forward(cluster: localkube.Cluster, namespace: str, target: str) -> Iterator[str]:
    """`kubectl port-forward` to target (`service/NAME:PORT`) on a free local port; yields the
    base URL, http://127.0.0.1:PORT."""
    resource, port = target.rsplit(":", 1)
    cmd = [
        str(cluster.kubectl_bin),
        f"--kubeconfig={cluster.kubeconfig}",
        "port-forward", "-n", namespace, "--address=127.0.0.1", resource, f":{port}",
    ]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as pf:
        try:
            assert pf.stdout is not None
            first = pf.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 8080"
            match = re.search(r"127\.0\.0\.1:(\d+)", first)
            if not match:
                pf.terminate()
                pytest.fail(f"kubectl port-forward said {first!r} {pf.communicate()[1]!r}")
            yield f"http://127.0.0.1:{match[1]}"
        finally:
            pf.terminate()


def schedulable_nodes(cluster: localkube.Cluster) -> list[str]:
    """Names of the Ready nodes ordinary pods can land on (no NoSchedule/NoExecute taint, not
    cordoned): kind's workers, or the one node of the real-node tier."""
    names = []
    for node in kubectl_json(cluster, "get", "nodes")["items"]:
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]
        )
        tainted = any(
            t.get("effect") in {"NoSchedule", "NoExecute"} for t in node["spec"].get("taints") or []
        )
        if ready and not tainted and not node["spec"].get("unschedulable"):
            names.append(node["metadata"]["name"])
    return sorted(names)


def pod_nodes(cluster: localkube.Cluster, namespace: str, selector: str) -> dict[str, str]:
    """Running pods matching selector (not being deleted), by name, with the node each is on."""
    pods = kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", selector)["items"]
    return {
        p["metadata"]["name"]: p["spec"].get("nodeName", "")
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    }


def has_cluster_dns(cluster: localkube.Cluster) -> bool:
    """Whether the cluster deploys cluster DNS (kubeadm's and kind's kube-dns Service in
    kube-system). Whether it answers is for the test to find out."""
    found = cluster.kubectl("get", "service", "kube-dns", "-n", "kube-system", check=False)
    return found.returncode == 0
