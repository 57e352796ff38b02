"""Fixtures for end-to-end tests: a cluster whose pods really run this project's images.

Skipped unless asked for, since they need root, containerd and a few minutes the first time:

    MODELDEPLOY_E2E=node pytest tests/e2e
        builds the images (hack/images/build.sh, cached), brings up tier 2 for the session
        (hack/cluster/node/localnode.py: control plane + containerd + kubelet + kube-proxy on
        this machine) and tears it all down at the end;
    MODELDEPLOY_E2E_KUBECONFIG=PATH pytest tests/e2e
        runs the same tests against an existing cluster: kind (after `kind load docker-image`
        of the images), or a node from `make cluster-up` (PATH .cache/kubeconfig). kubectl comes
        from MODELDEPLOY_K8S_BIN, PATH, or build.sh, in that order.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "cluster"))
from e2ekit import kubectl_json

import localkube
from localcluster.node import BINARIES, LocalNode
from localcluster.teardown import node_holder

REPO_ROOT = Path(__file__).resolve().parents[2]

HERE = Path(__file__).resolve().parent
MODE = os.environ.get("MODELDEPLOY_E2E", "")
EXTERNAL_KUBECONFIG = os.environ.get("MODELDEPLOY_E2E_KUBECONFIG")
IMAGES_BUILD = REPO_ROOT / "hack" / "images" / "build.sh"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: needs a cluster that runs pods (MODELDEPLOY_E2E=node, or a kubeconfig)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test here e2e; skip them all unless a cluster was asked for."""
    skip = pytest.mark.skip(
        reason="end-to-end: set MODELDEPLOY_E2E=node (tier 2 here, as root) "
        "or MODELDEPLOY_E2E_KUBECONFIG=PATH"
    )
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)
            if MODE != "node" and not EXTERNAL_KUBECONFIG:
                item.add_marker(skip)


def build_images() -> list[str]:
    """Build (cached) the images the tests run: the echo server, the serving image and the
    operator's (installed by its Helm chart). Returns the names built."""
    names = ["echo", "serving", "operator"]
    proc = subprocess.run([str(IMAGES_BUILD), "--no-load", *names], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"{IMAGES_BUILD} {' '.join(names)} failed:\n{proc.stderr[-3000:]}")
    print(proc.stdout, file=sys.stderr)
    return names


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localkube.Cluster]:
    """A cluster that runs pods: MODELDEPLOY_E2E_KUBECONFIG's, else a tier-2 node of our own."""
    if EXTERNAL_KUBECONFIG:
        yield localkube.Cluster(Path(EXTERNAL_KUBECONFIG), _external_kubectl())
        return
    if holder := node_holder():
        pytest.fail(
            f"a node is already up from {holder}: stop it (make cluster-down), or test it with "
            f"MODELDEPLOY_E2E_KUBECONFIG={REPO_ROOT / '.cache' / 'kubeconfig'}"
        )
    bin_dir = localkube.find_bin_dir(BINARIES)
    build_images()
    started = time.monotonic()
    with LocalNode(bin_dir, tmp_path_factory.mktemp("node")) as node:
        print(f"tier 2 up in {time.monotonic() - started:.1f}s", file=sys.stderr)
        yield node


@pytest.fixture(scope="session")
def available_images(cluster: localkube.Cluster) -> set[str]:
    """Images the node has (from the Node's status, which lists them with their names)."""
    deadline = time.monotonic() + 30
    while True:
        nodes = kubectl_json(cluster, "get", "nodes")["items"]
        names = {
            n
            for node in nodes
            for i in node["status"].get("images", [])
            for n in i.get("names") or []
        }
        if names or time.monotonic() > deadline:
            return {_short(n) for n in names}
        time.sleep(1)


def _short(ref: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def _external_kubectl() -> str:
    if env := os.environ.get("MODELDEPLOY_K8S_BIN"):
        return str(Path(env) / "kubectl")
    return shutil.which("kubectl") or str(localkube.find_bin_dir() / "kubectl")


@pytest.fixture
def namespace(cluster: localkube.Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (its pods with it)."""
    suffix = secrets.token_hex(3)
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_")).strip("-")
    name = f"e2e-{slug[: 50 - len(suffix)].strip('-')}-{suffix}"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
