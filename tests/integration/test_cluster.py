"""What a user checks first about the local control plane: it is the pinned Kubernetes, its
controllers and scheduler really work, namespaces come clean, and stopping leaves nothing behind."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import localkube

T = TypeVar("T")
GO_MOD = Path(localkube.__file__).parent / "k8s" / "go.mod"
DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def get_json(cluster: localkube.Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    """Poll probe until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.3)
    return found


def owned_by(items: list[Any], owner: dict[str, Any]) -> list[Any]:
    """The items whose controller ownerReference is owner."""
    return [
        item
        for item in items
        for ref in item["metadata"].get("ownerReferences", [])
        if ref.get("controller")
        and ref["uid"] == owner["metadata"]["uid"]
        and ref["kind"] == owner["kind"]
    ]


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains text (zombies have none)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
        except OSError:  # it exited while we looked
            continue
    return pids


def test_server_is_the_pinned_kubernetes_version(cluster: localkube.Cluster) -> None:
    if not isinstance(cluster, localkube.LocalCluster):
        pytest.skip("an existing cluster runs whatever version it runs")
    pin = re.search(r"^require k8s\.io/kubernetes (\S+)$", GO_MOD.read_text(), re.MULTILINE)
    assert pin, f"no k8s.io/kubernetes pin in {GO_MOD}"
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == pin[1] == "v1.35.4"
    assert version["clientVersion"]["gitVersion"] == pin[1]


def test_deployment_gets_replicaset_and_pods(cluster: localkube.Cluster, namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                # Never pulled: a control plane without nodes runs nothing.
                "spec": {"containers": [{"name": "web", "image": "localkube.invalid/web:1"}]},
            },
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(deployment))
    deploy = get_json(cluster, "deployment", "web", "-n", namespace)

    replicasets = eventually(
        lambda: owned_by(get_json(cluster, "replicasets", "-n", namespace)["items"], deploy),
        "the deployment controller to create a ReplicaSet",
    )
    assert len(replicasets) == 1
    rs = replicasets[0]

    def two_pods() -> list[Any] | None:
        pods = owned_by(get_json(cluster, "pods", "-n", namespace)["items"], rs)
        return pods if len(pods) == 2 else None

    pods = eventually(two_pods, "the replicaset controller to create two Pods")
    assert {pod["metadata"]["labels"]["app"] for pod in pods} == {"web"}
    assert {pod["status"]["phase"] for pod in pods} == {"Pending"}

    if isinstance(cluster, localkube.LocalCluster):
        # No node exists, so the scheduler's verdict proves it runs: Unschedulable.
        def unschedulable() -> bool:
            reasons = [
                cond.get("reason")
                for pod in get_json(cluster, "pods", "-n", namespace, "-l", "app=web")["items"]
                for cond in pod["status"].get("conditions", [])
                if cond["type"] == "PodScheduled"
            ]
            return reasons == ["Unschedulable"] * 2

        eventually(unschedulable, "the scheduler to mark both Pods Unschedulable")


@pytest.mark.parametrize("label", ["x" * 80])
def test_namespace_fixture_gives_a_fresh_empty_namespace(
    cluster: localkube.Cluster, namespace: str, label: str, request: pytest.FixtureRequest
) -> None:
    # The long parameter makes the test's name too long for a namespace: it must be cut.
    assert len(request.node.name) > len(label) > 63
    assert len(namespace) <= 63
    assert DNS_1123_LABEL.fullmatch(namespace), namespace
    assert namespace.startswith("t-namespace-fixture-gives")
    assert get_json(cluster, "namespace", namespace)["status"]["phase"] == "Active"
    assert get_json(cluster, "all", "-n", namespace)["items"] == []
    accounts = get_json(cluster, "serviceaccounts", "-n", namespace)["items"]
    assert [sa["metadata"]["name"] for sa in accounts] == ["default"]


def test_stop_leaves_no_process_behind(k8s_bin_dir: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "throwaway"
    cluster = localkube.LocalCluster(k8s_bin_dir, state_dir)
    with cluster:
        pids = cluster.pids
        assert list(pids) == list(localkube.COMPONENTS)
        assert sorted(processes_mentioning(str(state_dir))) == sorted(pids.values())
        assert cluster.kubectl("get", "namespace", "default").returncode == 0
    assert processes_mentioning(str(state_dir)) == []
    assert cluster.pids == {}
    assert not (state_dir / localkube.STATE_FILE).exists()
    cluster.stop()  # idempotent


def test_failed_start_stops_what_it_started(k8s_bin_dir: Path, tmp_path: Path) -> None:
    # A kube-apiserver that dies at once: etcd, already running, must be stopped again.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("etcd", "kube-controller-manager", "kube-scheduler", "kubectl"):
        (bin_dir / name).symlink_to(k8s_bin_dir / name)
    (bin_dir / "kube-apiserver").write_text("#!/bin/sh\necho 'no apiserver today' >&2\nexit 3\n")
    (bin_dir / "kube-apiserver").chmod(0o755)
    state_dir = tmp_path / "broken"

    with pytest.raises(localkube.ClusterError, match=r"(?s)kube-apiserver exited.*no apiserver"):
        localkube.LocalCluster(bin_dir, state_dir).start()
    assert processes_mentioning(str(state_dir)) == []
