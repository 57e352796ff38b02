"""Fixtures for integration tests: a real control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) started once per session by hack/cluster/localkube.py,
and a fresh namespace per test.

Set MODELDEPLOY_TEST_KUBECONFIG to run the same tests against an existing cluster instead
(kind, or one from `localkube.py up`); kubectl then comes from MODELDEPLOY_K8S_BIN, PATH, or
build.sh, in that order.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "cluster"))
import localkube
from speccases import HTTPROUTE_CRD

HERE = Path(__file__).resolve().parent
EXTERNAL_KUBECONFIG = os.environ.get("MODELDEPLOY_TEST_KUBECONFIG")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration, so `-m "not integration"` skips them all."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def k8s_bin_dir() -> Path:
    """The built Kubernetes binaries (build.sh is a fast no-op once they are cached)."""
    if EXTERNAL_KUBECONFIG and not os.environ.get("MODELDEPLOY_K8S_BIN"):
        pytest.skip("testing an existing cluster; set MODELDEPLOY_K8S_BIN to test localkube too")
    return localkube.find_bin_dir()


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[localkube.Cluster]:
    """The cluster under test: MODELDEPLOY_TEST_KUBECONFIG's, else a LocalCluster of our own."""
    if EXTERNAL_KUBECONFIG:
        yield localkube.Cluster(Path(EXTERNAL_KUBECONFIG), _external_kubectl())
        return
    bin_dir: Path = request.getfixturevalue("k8s_bin_dir")
    with localkube.LocalCluster(bin_dir, tmp_path_factory.mktemp("cluster")) as local:
        yield local


def _external_kubectl() -> str:
    if env := os.environ.get("MODELDEPLOY_K8S_BIN"):
        return str(Path(env) / "kubectl")
    return shutil.which("kubectl") or str(localkube.find_bin_dir() / "kubectl")


def namespace_name(test_name: str) -> str:
    """`t-<test name slug>-<random>`: a valid, unique namespace name (DNS-1123, <= 63 chars)."""
    suffix = secrets.token_hex(3)
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower().removeprefix("test_")).strip("-")
    slug = slug[: 63 - len(f"t--{suffix}")].strip("-")
    return f"t-{slug}-{suffix}" if slug else f"t-{suffix}"


@pytest.fixture
def namespace(cluster: localkube.Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for finalization)."""
    name = namespace_name(request.node.name)
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "modeldeployments.modeldeploy.io.yaml"


@pytest.fixture(scope="session")
def crd(cluster: localkube.Cluster) -> localkube.Cluster:
    """The cluster with the committed ModelDeployment CRD installed and established."""
    cluster.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
    cluster.wait_established("modeldeployments.modeldeploy.io")
    return cluster


@pytest.fixture
def httproute_crd(crd: localkube.Cluster) -> Iterator[Callable[[], None]]:
    """Installs a minimal HTTPRoute CRD when called; always removed afterwards (other tests
    check the operator's answer to a cluster without Gateway API)."""

    def install() -> None:
        crd.kubectl("apply", "-f", "-", input=yaml.safe_dump(HTTPROUTE_CRD))
        crd.wait_established("httproutes.gateway.networking.k8s.io")

    yield install
    crd.kubectl("delete", "crd", "httproutes.gateway.networking.k8s.io", "--ignore-not-found",
                "--timeout=60s")  # fmt: skip
