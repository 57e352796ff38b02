"""Tier 2: the tier-1 control plane (localcluster.control_plane) plus a real node on this
machine, so pods really run: Debian's containerd (its CRI plugin), runc and CNI plugins, and the
kubelet and kube-proxy built from source by hack/cluster/build.sh.

Needs root. One node per machine: it owns the node address NODE_IP (added to `lo`, so it is
local, stable and reachable from pods, and nothing listens on an outside interface), the pod
bridge, the iptables rules of kube-proxy and the CNI plugins, and the `kubepods` cgroups. `down`
(or stop(), or the exit of the process that started it) removes all of that again: pods are
drained through the kubelet (so CNI tears their networks down), then whatever is left (tasks,
shims, network namespaces, mounts, chains, cgroups) is removed by force, and the sysctls the
kubelet and CNI changed are put back (localcluster.teardown).

containerd keeps its content store in the cache (MODELDEPLOY_CACHE, else ~/.cache/modeldeploy),
so loaded images survive `down`, and a second `up` neither rebuilds nor reloads anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localcluster import cluster_dns, control_plane, processes
from localcluster.cluster import ClusterError
from localcluster.host import (
    CNI_BIN_DIRS,
    CNI_PLUGINS,
    CONTAINERD_SOCKET,
    HOST_DIRS,
    MACHINE_RECORD,
    NODE_IP,
    RUN_DIR,
    containerd_answers,
    load_images,
    read_sysctls,
    setup_host_network,
)
from localcluster.node_config import NODE_NAME, NodeFiles
from localcluster.paths import REPO_ROOT, find_bin_dir, share_kubeconfig
from localcluster.pki import admin_context
from localcluster.processes import LocalTier, get_ok, step
from localcluster.teardown import (
    NODE_STATE_FILE,
    machine_record_state_dir,
    node_holder,
    read_node_state,
    running_node_components,
    teardown,
)

DEFAULT_STATE_DIR = REPO_ROOT / ".cache" / "node"
# Node components in start order; the control plane starts before and stops after them.
NODE_COMPONENTS = ("containerd", "kube-proxy", "kubelet")
# What build.sh must provide for a node: tier 1's binaries and the node's own.
BINARIES = (*control_plane.COMPONENTS, "kubectl", "kubelet", "kube-proxy")
HOST_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "ip")


class LocalNode(LocalTier):
    """A tier-1 control plane and a real node, owned by this process; stop() ends all of it."""

    def __init__(self, bin_dir: Path, state_dir: Path, timeout: float = 180.0) -> None:
        self.bin_dir = bin_dir.resolve()
        self.state_dir = state_dir.resolve()
        self.timeout = timeout
        self.control_plane = control_plane.LocalCluster(
            self.bin_dir, self.state_dir, timeout, advertise_address=NODE_IP
        )
        super().__init__(self.control_plane.kubeconfig, self.bin_dir / "kubectl")
        self._components = processes.Components(self.state_dir, timeout, self._save_state)

    @property
    def server(self) -> str:
        return self.control_plane.server

    def _check_can_start(self) -> None:
        check_prerequisites(self.bin_dir)
        if holder := node_holder():
            raise ClusterError(f"a node is already up from {holder}: run `localnode.py down`")
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def _stop(self) -> None:
        """Drain and stop the node, clean up after it, stop the control plane."""
        teardown(self.state_dir, self.control_plane.stop)
        self._components.forget()  # stopped by teardown, from the record

    def _detach(self) -> None:
        self.control_plane.detach()
        self._components.forget()

    def _start(self) -> None:
        """The control plane (registered after this node, which stops it itself), then the
        node, waiting until it is Ready."""
        node = NodeFiles(self.state_dir)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        MACHINE_RECORD.write_text(json.dumps({"state_dir": str(self.state_dir)}) + "\n")
        with step("preparing host networking"):
            # Recorded before anything changes, so `down` restores even a half-done `up`.
            self._save_state(
                sysctls=read_sysctls(), created=[str(d) for d in HOST_DIRS if not d.exists()]
            )
            setup_host_network()
        self.control_plane.start()
        pki = self.state_dir / "pki"
        with step("writing node certificates and configuration"):
            node.write(pki, self.control_plane.server)
        self._components.launch(
            "containerd",
            Path(shutil.which("containerd") or "containerd"),
            ["--config", str(node.containerd_config)],
            lambda: CONTAINERD_SOCKET.exists() and containerd_answers(),
        )
        with step("loading images into containerd"):
            load_images(required=("pause", "coredns"))
        # The kubelet registers the Node that kube-proxy waits for: start both, then wait.
        self._components.launch(
            "kubelet",
            self.bin_dir / "kubelet",
            [
                f"--config={node.kubelet_config}",
                f"--kubeconfig={node.kubelet_kubeconfig}",
                f"--root-dir={node.kubelet_root}",
                f"--cert-dir={node.kubelet_root / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
            ],
            None,
        )
        self._components.launch(
            "kube-proxy",
            self.bin_dir / "kube-proxy",
            [f"--config={node.proxy_config}"],
            lambda: get_ok(f"http://127.0.0.1:{node.ports['proxy-healthz']}/healthz"),
        )
        admin = admin_context(pki)
        with step("waiting for the node to be Ready"):
            self._components.wait("kubelet", lambda: node_ready(self.server, admin))
        # Not awaited: a pod that starts first retries its lookups a moment, as on any cluster.
        with step("deploying cluster DNS (CoreDNS)"):
            self.kubectl("apply", "-f", "-", input=cluster_dns.manifest())

    def _save_state(
        self, sysctls: dict[str, str] | None = None, created: list[str] | None = None
    ) -> None:
        state = read_node_state(self.state_dir) or {"pids": {}, "exes": {}}
        if sysctls is not None:
            state["sysctls"] = sysctls
        if created is not None:
            state["created"] = created
        state["pids"].update(self._components.pids)
        state["exes"].update(self._components.exes)
        processes.write_record(self.state_dir / NODE_STATE_FILE, state)


def check_prerequisites(bin_dir: Path) -> None:
    """Fail early, naming what to install or build, when this machine cannot run a node."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (containerd, kubelet, iptables)")
    for name in BINARIES:
        if not (bin_dir / name).is_file():
            problems.append(f"{bin_dir / name} missing: hack/cluster/build.sh kubelet kube-proxy")
    for tool in HOST_BINARIES:
        if not shutil.which(tool):
            problems.append(f"{tool} missing: apt-get install containerd runc iptables iproute2")
    if not any(all((d / p).exists() for p in CNI_PLUGINS) for d in CNI_BIN_DIRS):
        problems.append("CNI plugins missing: apt-get install containernetworking-plugins")
    if problems:
        raise ClusterError("cannot run a node here:\n  " + "\n  ".join(problems))


def _get_json(url: str, ctx: ssl.SSLContext) -> Any:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def node_ready(server: str, ctx: ssl.SSLContext) -> bool:
    """Whether the API server at server reports the node Ready."""
    node = _get_json(f"{server}/api/v1/nodes/{NODE_NAME}", ctx)
    conditions = (node or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


# ---- CLI ---------------------------------------------------------------------------------------


def up(state_dir: Path) -> int:
    """Start the control plane and the node from state_dir and leave them running."""
    if (holder := node_holder()) == state_dir and len(running_node_components(state_dir)) == len(
        NODE_COMPONENTS
    ):
        print(f"localnode: already up ({state_dir})", file=sys.stderr)
    else:
        if holder is None:
            teardown(state_dir)  # the remains of a half-dead node
        node = LocalNode(find_bin_dir(BINARIES), state_dir)
        started = time.monotonic()
        node.start()
        node.detach()
        share_kubeconfig(node.kubeconfig)
        print(
            f"localnode: up at {node.server} with node {NODE_NAME} ({NODE_IP}) "
            f"in {time.monotonic() - started:.1f}s; `down` stops it",
            file=sys.stderr,
        )
    print(f"export KUBECONFIG={state_dir / 'admin.kubeconfig'}")
    return 0


def down(state_dir: Path) -> int:
    """Stop the node recorded in state_dir, or the machine's node, and remove every trace."""
    if read_node_state(state_dir) is None and control_plane.read_state(state_dir) is None:
        # The machine's node may come from elsewhere: a test session that was killed -9.
        recorded = machine_record_state_dir()
        if recorded is None or read_node_state(recorded) is None:
            print(f"localnode: nothing running from {state_dir}", file=sys.stderr)
            return 0
        print(f"localnode: stopping the machine's node, from {recorded}", file=sys.stderr)
        state_dir = recorded
    teardown(state_dir)
    print("localnode: stopped", file=sys.stderr)
    return 0


def status(state_dir: Path) -> int:
    """Print the node's components, the control plane's and the node's readiness."""
    state = read_node_state(state_dir)
    cp = control_plane.read_state(state_dir)
    if state is None or cp is None:
        print(f"down (no node recorded in {state_dir})")
        return 1
    running = running_node_components(state_dir)
    for name in NODE_COMPONENTS:
        word = "running" if name in running else "stopped"
        print(f"{name:24} {word:8} pid {state['pids'].get(name)}")
    code = control_plane.status(state_dir)
    ready = node_ready(cp["server"], admin_context(state_dir / "pki"))
    print(f"{'node ' + NODE_NAME:24} {'Ready' if ready else 'NotReady'}  {NODE_IP}")
    return 0 if code == 0 and ready and len(running) == len(NODE_COMPONENTS) else 1


def load(names: Sequence[str], if_running: bool) -> int:
    """Import the cached images into the running node's containerd."""
    if not containerd_answers():
        if if_running:
            print("localnode: no node running; images load when it starts", file=sys.stderr)
            return 0
        raise ClusterError(f"containerd is not running at {CONTAINERD_SOCKET}: `up` first")
    loaded = load_images(names)
    print(f"localnode: loaded {', '.join(loaded) or 'nothing new'}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local Kubernetes node (tier 2).")
    parser.add_argument("command", choices=["up", "down", "status", "load-images"])
    parser.add_argument("images", nargs="*", help="for load-images: names (default: all cached)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="certificates, etcd data, node configuration, logs and pids (default: %(default)s)",
    )
    parser.add_argument(
        "--if-running", action="store_true", help="load-images: no error when no node runs"
    )
    args = parser.parse_intermixed_args(argv)
    state_dir = args.state_dir.resolve()
    try:
        if args.command == "load-images":
            return load(args.images, args.if_running)
        commands = {"up": up, "down": down, "status": status}
        return commands[args.command](state_dir)
    except ClusterError as err:
        print(f"localnode: {err}", file=sys.stderr)
        return 1
