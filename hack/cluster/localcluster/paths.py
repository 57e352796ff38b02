"""Where the local cluster's pieces live: the repository, the cache, the built binaries.

Everything that outlives a run (binaries, images, containerd's content) is in the cache, outside
git; per-run state is under the repository's .cache/ or a test's temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from localcluster.cluster import ClusterError

REPO_ROOT = Path(__file__).resolve().parents[3]
CLUSTER_DIR = REPO_ROOT / "hack" / "cluster"
BUILD_SH = CLUSTER_DIR / "build.sh"
NODE_DIR = CLUSTER_DIR / "node"  # the node's CLI and its containerd.toml template
# Where `up` copies the admin kubeconfig, for tools that should not know the state dir.
SHARED_KUBECONFIG = REPO_ROOT / ".cache" / "kubeconfig"
CACHE_ROOT = Path(
    os.environ.get("MODELDEPLOY_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modeldeploy"
)


def find_bin_dir(names: Sequence[str] = ()) -> Path:
    """The Kubernetes binaries: $MODELDEPLOY_K8S_BIN, else build.sh's (cached) output.

    names: the binaries build.sh must provide (none: its default, tier 1's); a node needs more.
    """
    if env := os.environ.get("MODELDEPLOY_K8S_BIN"):
        return Path(env)
    out = subprocess.run([str(BUILD_SH), *names], stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise ClusterError(f"{BUILD_SH} failed with code {out.returncode}")
    return Path(out.stdout.strip().splitlines()[-1])


def share_kubeconfig(kubeconfig: Path) -> None:
    """Copy a cluster's admin kubeconfig to SHARED_KUBECONFIG, where the demo and docs look."""
    SHARED_KUBECONFIG.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kubeconfig, SHARED_KUBECONFIG)
