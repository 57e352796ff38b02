#!/usr/bin/env python3
"""Tier-1 local Kubernetes: etcd, kube-apiserver, kube-controller-manager and kube-scheduler as
plain processes on 127.0.0.1 (the code: localcluster.control_plane).

    python3 hack/cluster/localkube.py up [--state-dir DIR]   # start in the background
    python3 hack/cluster/localkube.py status [--state-dir DIR]
    python3 hack/cluster/localkube.py down [--state-dir DIR]

Imported as `localkube` by tests and benchmarks (with hack/cluster on sys.path), it names what
they use to reach and run a cluster, so they need not know the package's modules.
"""

from __future__ import annotations

import sys

from localcluster.cluster import Cluster, ClusterError, KubectlError
from localcluster.control_plane import COMPONENTS, STATE_FILE, LocalCluster, main
from localcluster.paths import find_bin_dir
from localcluster.pki import admin_context

__all__ = [
    "COMPONENTS",
    "STATE_FILE",
    "Cluster",
    "ClusterError",
    "KubectlError",
    "LocalCluster",
    "admin_context",
    "find_bin_dir",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())
