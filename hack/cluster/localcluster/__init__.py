"""Local Kubernetes from binaries built from source, for tests, benchmarks and the demo.

Modules, lowest first (each imports only those above it in this list):

- `cluster`: any cluster reached through a kubeconfig (kubectl), and the errors;
- `paths`: where the repository, the cache and the built binaries are;
- `processes`: a component as a process (start, await, stop its process group), the registry
  that stops what this process started on exit or SIGTERM, and `LocalTier`, the start/stop
  both tiers share;
- `pki`: a CA, certificates it signs, and kubeconfigs that embed them;
- `control_plane`: tier 1, etcd and the control plane on loopback (`LocalCluster`, its CLI);
- `host`: what a node does to this machine (networking, images, force-removal), one per machine;
- `node_config`: the node's configuration files;
- `teardown`: the node's record, and how everything it did is undone;
- `node`: tier 2, the control plane plus a real node (`LocalNode`, its CLI).

Standard library only: `hack/images/build.sh` runs the node's CLI with the system python3.
The commands stay at their documented paths (`localkube.py`, `node/localnode.py`).
"""
