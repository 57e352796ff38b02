"""The node's record, and how everything a node did to this machine is undone.

`up` records (in the state dir, and machine-wide in /run/modeldeploy/node.json) each component's
pid and executable, the sysctls it is about to change and the host directories it creates,
before it changes anything, so `down` can undo even a half-done `up` or a node whose owner was
killed -9.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcluster import control_plane, processes
from localcluster.cluster import Cluster, ClusterError
from localcluster.host import (
    CNI_BRIDGE,
    CONTAINERD_SOCKET,
    CONTAINERD_STATE,
    MACHINE_RECORD,
    NODE_IP,
    RUN_DIR,
    cleanup_iptables,
    containerd_root,
    ctr,
    kill_cgroup,
    kill_shims,
    pod_network_namespaces,
    remove_cgroups,
    remove_cni_results,
    remove_container_log_links,
    remove_containers,
    remove_host_dirs,
    run_cmd,
    unmount_under,
    write_sysctls,
)
from localcluster.node_config import NODE_NAME
from localcluster.processes import step

NODE_STATE_FILE = "node.json"


def read_node_state(state_dir: Path) -> dict[str, Any] | None:
    """What `up` recorded of the node in state_dir (pids, executables, sysctls, created dirs)."""
    return processes.read_record(state_dir / NODE_STATE_FILE)


def running_node_components(state_dir: Path) -> list[str]:
    """Names of the node components recorded in state_dir whose processes still run."""
    state = read_node_state(state_dir) or {"pids": {}, "exes": {}}
    return processes.running(state["pids"], lambda name: Path(state["exes"][name]))


def machine_record_state_dir() -> Path | None:
    """The state dir of the node this machine last started, from the machine-wide record."""
    try:
        return Path(json.loads(MACHINE_RECORD.read_text())["state_dir"])
    except (OSError, ValueError, KeyError):
        return None


def node_holder() -> Path | None:
    """The state dir of the node running on this machine, if one runs."""
    state_dir = machine_record_state_dir()
    return state_dir if state_dir and running_node_components(state_dir) else None


def teardown(state_dir: Path, stop_control_plane: Callable[[], None] | None = None) -> None:
    """Stop the node recorded in state_dir and remove every trace of it from the machine.

    stop_control_plane: how to stop the control plane, last (default: its recorded processes).
    Best effort at every step (a half-started node must go as cleanly as a healthy one); what
    could not be removed is reported on stderr at the end.
    """
    state = read_node_state(state_dir)
    cp_state = control_plane.read_state(state_dir)
    if state is None and cp_state is None:
        return
    state = state or {"pids": {}, "exes": {}, "sysctls": {}}
    bin_dir = Path(cp_state["bin_dir"]) if cp_state else None
    problems: list[str] = []
    running = running_node_components(state_dir)
    with step("draining the node"):
        if "kubelet" in running and "containerd" in running and cp_state:
            problems += drain(state_dir, bin_dir)
    for name in ("kubelet", "kube-proxy"):
        _stop_recorded(state, name)
    with step("removing containers"):
        netns: set[str] = set()
        if "containerd" in running:
            netns, more = remove_containers()
            problems += more
        _stop_recorded(state, "containerd")
        problems += kill_shims()
        # Whatever still runs in the kubelet's cgroups is a container of this node whose shim
        # is gone (containerd or the kubelet died): kill it, after noting its network namespace.
        netns |= pod_network_namespaces()
        problems += kill_cgroup("kubepods")
    with step("cleaning up the host"):
        problems += unmount_under(state_dir / "kubelet", CONTAINERD_STATE, *map(Path, netns))
        for ns in netns:
            Path(ns).unlink(missing_ok=True)
        remove_cni_results()
        shutil.rmtree(CONTAINERD_STATE, ignore_errors=True)
        for sock in (CONTAINERD_SOCKET, Path(f"{CONTAINERD_SOCKET}.ttrpc")):
            sock.unlink(missing_ok=True)
        cri = containerd_root() / "io.containerd.grpc.v1.cri"
        for sub in ("sandboxes", "containers"):
            shutil.rmtree(cri / sub, ignore_errors=True)
        shutil.rmtree(state_dir / "cni" / "ipam", ignore_errors=True)
        run_cmd("ip", "link", "del", CNI_BRIDGE, check=False)
        problems += cleanup_iptables(bin_dir)
        problems += remove_cgroups("kubepods")
        remove_container_log_links(state_dir / "pod-logs")
        remove_host_dirs([Path(p) for p in state.get("created", [])])
        write_sysctls(state.get("sysctls", {}))
    if stop_control_plane is not None:
        stop_control_plane()
    elif cp_state is not None:
        control_plane.stop_recorded(state_dir)
    run_cmd("ip", "addr", "del", f"{NODE_IP}/32", "dev", "lo", check=False)
    # Removed last: `up` refuses to start while the machine's record stands.
    for record in (state_dir / NODE_STATE_FILE, MACHINE_RECORD):
        record.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        RUN_DIR.rmdir()
    if problems:
        print("localnode: left behind:\n  " + "\n  ".join(problems), file=sys.stderr)


def _stop_recorded(state: dict[str, Any], name: str) -> None:
    pid = state["pids"].get(name)
    if pid is None:
        return
    processes.stop_recorded(pid, Path(state["exes"][name]), timeout=20)


def drain(state_dir: Path, bin_dir: Path | None) -> list[str]:
    """Delete the node's pods through the API and wait until the kubelet has stopped them all,
    so each pod's network is torn down by CNI as usual; then delete the Node."""
    if bin_dir is None:
        return []
    cluster = Cluster(state_dir / "admin.kubeconfig", bin_dir / "kubectl")
    cluster.kubectl("cordon", NODE_NAME, check=False)
    cluster.kubectl(
        "delete", "pods", "--all-namespaces", f"--field-selector=spec.nodeName={NODE_NAME}",
        "--grace-period=1", "--wait=false", check=False,
    )  # fmt: skip
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and _running_tasks():
        time.sleep(0.5)
    left = _running_tasks()
    cluster.kubectl("delete", "node", NODE_NAME, "--ignore-not-found", "--wait=false", check=False)
    return [f"{len(left)} container tasks still running after the drain"] if left else []


def _running_tasks() -> list[str]:
    try:
        out = ctr("tasks", "ls", timeout=20)
    except (ClusterError, subprocess.TimeoutExpired):
        return []
    return [line.split()[0] for line in out.splitlines()[1:] if "RUNNING" in line]
