#!/usr/bin/env python3
"""Tier-2 local Kubernetes: the tier-1 control plane (localkube.py) plus a real node on this
machine, so pods really run: Debian's containerd (its CRI plugin), runc and CNI plugins, and the
kubelet and kube-proxy built from source by hack/cluster/build.sh.

    python3 hack/cluster/node/localnode.py up [--state-dir DIR]   # start in the background
    python3 hack/cluster/node/localnode.py status [--state-dir DIR]
    python3 hack/cluster/node/localnode.py down [--state-dir DIR]  # stop and clean up everything
    python3 hack/cluster/node/localnode.py load-images [NAME...]   # import images built by
                                                                   # hack/images/build.sh

Needs root. One node per machine: it owns the node address NODE_IP (added to `lo`, so it is
local, stable and reachable from pods, and nothing listens on an outside interface), the pod
bridge, the iptables rules of kube-proxy and the CNI plugins, and the `kubepods` cgroups. `down`
(or stop(), or the exit of the process that started it) removes all of that again: pods are
drained through the kubelet (so CNI tears their networks down), then whatever is left (tasks,
shims, network namespaces, mounts, chains, cgroups) is removed by force, and the sysctls the
kubelet and CNI changed are put back.

containerd keeps its content store in the cache (MODELDEPLOY_CACHE, else ~/.cache/modeldeploy),
so loaded images survive `down`, and a second `up` neither rebuilds nor reloads anything.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import localkube
from localkube import ClusterError, _step
from nodehost import (
    CLUSTER_CIDR,
    CNI_BIN_DIRS,
    CNI_BRIDGE,
    CNI_NETWORK,
    CNI_PLUGINS,
    CONTAINERD_SOCKET,
    CONTAINERD_STATE,
    HOST_DIRS,
    MACHINE_RECORD,
    NODE_IP,
    POD_CIDR,
    RUN_DIR,
    SANDBOX_IMAGE,
    cleanup_iptables,
    containerd_answers,
    containerd_root,
    ctr,
    kill_cgroup,
    kill_shims,
    load_images,
    pod_network_namespaces,
    read_sysctls,
    remove_cgroups,
    remove_cni_results,
    remove_container_log_links,
    remove_containers,
    remove_host_dirs,
    run_cmd,
    setup_host_network,
    unmount_under,
    write_sysctls,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_STATE_DIR = REPO_ROOT / ".cache" / "node"
NODE_STATE_FILE = "node.json"

NODE_NAME = "modeldeploy"
# Node components in start order; the control plane starts before and stops after them.
NODE_COMPONENTS = ("containerd", "kube-proxy", "kubelet")
HOST_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "ip")


class LocalNode(localkube.Cluster):
    """A tier-1 control plane and a real node, owned by this process; stop() ends all of it."""

    def __init__(self, bin_dir: Path, state_dir: Path, timeout: float = 180.0) -> None:
        self.bin_dir = bin_dir.resolve()
        self.state_dir = state_dir.resolve()
        self.timeout = timeout
        self.control_plane = localkube.LocalCluster(
            self.bin_dir, self.state_dir, timeout, advertise_address=NODE_IP
        )
        super().__init__(self.control_plane.kubeconfig, self.bin_dir / "kubectl")
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> LocalNode:
        self.start()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def server(self) -> str:
        return self.control_plane.server

    def start(self) -> None:
        """Start the control plane and the node and wait until the node is Ready."""
        check_prerequisites(self.bin_dir)
        if holder := node_holder():
            raise ClusterError(f"a node is already up from {holder}: run `localnode.py down`")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _RUNNING.add(self)
        _stop_all_on_sigterm()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Drain and stop the node, clean up after it, stop the control plane; idempotent."""
        _RUNNING.discard(self)
        teardown(self.state_dir, self.control_plane.stop)
        for proc in self._procs.values():
            proc.poll()  # reap
        self._procs.clear()

    def detach(self) -> None:
        """Leave everything running past this process's exit (for `up`); `down` ends it."""
        _RUNNING.discard(self)
        self.control_plane.detach()
        self._procs.clear()

    def _start(self) -> None:
        node = NodeFiles(self.state_dir)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        MACHINE_RECORD.write_text(json.dumps({"state_dir": str(self.state_dir)}) + "\n")
        with _step("preparing host networking"):
            # Recorded before anything changes, so `down` restores even a half-done `up`.
            self._save_state(
                sysctls=read_sysctls(), created=[str(d) for d in HOST_DIRS if not d.exists()]
            )
            setup_host_network()
        self.control_plane.start()
        pki = self.state_dir / "pki"
        with _step("writing node certificates and configuration"):
            node.write(pki, self.control_plane.server)
        self._launch(
            "containerd",
            Path(shutil.which("containerd") or "containerd"),
            lambda: CONTAINERD_SOCKET.exists() and containerd_answers(),
            ["--config", str(node.containerd_config)],
        )
        with _step("loading images into containerd"):
            load_images(required=("pause",))
        # The kubelet registers the Node that kube-proxy waits for: start both, then wait.
        self._launch(
            "kubelet",
            self.bin_dir / "kubelet",
            None,
            [
                f"--config={node.kubelet_config}",
                f"--kubeconfig={node.kubelet_kubeconfig}",
                f"--root-dir={node.kubelet_root}",
                f"--cert-dir={node.kubelet_root / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
            ],
        )
        self._launch(
            "kube-proxy",
            self.bin_dir / "kube-proxy",
            lambda: _get_ok(f"http://127.0.0.1:{node.ports['proxy-healthz']}/healthz"),
            [f"--config={node.proxy_config}"],
        )
        admin = localkube.admin_context(pki)
        with _step("waiting for the node to be Ready"):
            self._wait("kubelet", lambda: node_ready(self.server, admin))

    def _launch(
        self, name: str, exe: Path, ready: Callable[[], bool] | None, args: list[str]
    ) -> None:
        with _step(f"starting {name}"):
            with open(self.state_dir / f"{name}.log", "wb") as log:
                self._procs[name] = subprocess.Popen(
                    [str(exe), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._save_state()
            if ready is not None:
                self._wait(name, ready)

    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        while not ready():
            for other, proc in self._procs.items():
                if proc.poll() is not None:
                    raise ClusterError(
                        f"{other} exited with code {proc.returncode}"
                        + log_tail(self.state_dir, other)
                    )
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{name} not ready after {self.timeout:g}s" + log_tail(self.state_dir, name)
                )
            time.sleep(0.2)

    def _save_state(
        self, sysctls: dict[str, str] | None = None, created: list[str] | None = None
    ) -> None:
        path = self.state_dir / NODE_STATE_FILE
        state = read_node_state(self.state_dir) or {"pids": {}, "exes": {}}
        if sysctls is not None:
            state["sysctls"] = sysctls
        if created is not None:
            state["created"] = created
        for name, proc in self._procs.items():
            state["pids"][name] = proc.pid
            state["exes"][name] = proc.args[0]  # type: ignore[index]
        path.write_text(json.dumps(state, indent=2) + "\n")


class NodeFiles:
    """The node's configuration files, certificates and directories under the state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.containerd_config = state_dir / "containerd.toml"
        self.cni_conf_dir = state_dir / "cni" / "net.d"
        self.kubelet_root = state_dir / "kubelet"
        self.kubelet_config = state_dir / "kubelet.json"
        self.kubelet_kubeconfig = state_dir / "kubelet.kubeconfig"
        self.proxy_config = state_dir / "kube-proxy.json"
        self.proxy_kubeconfig = state_dir / "kube-proxy.kubeconfig"
        kubelet, healthz, proxy_healthz, proxy_metrics = localkube.free_ports(4)
        self.ports = {
            "kubelet": kubelet,
            "healthz": healthz,
            "proxy-healthz": proxy_healthz,
            "proxy-metrics": proxy_metrics,
        }

    def write(self, pki: Path, server: str) -> None:
        sign = localkube.sign_certificate
        if not (pki / "kube-proxy.crt").exists():
            sign(pki, "kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth")
            sign(pki, "kubelet-serving", f"/CN={NODE_NAME}", "serverAuth",
                 f"IP:{NODE_IP},DNS:{NODE_NAME}")  # fmt: skip
            sign(pki, "kube-proxy", "/CN=system:kube-proxy", "clientAuth")
        localkube.write_kubeconfig(self.kubelet_kubeconfig, server, pki, "kubelet")
        localkube.write_kubeconfig(self.proxy_kubeconfig, server, pki, "kube-proxy")
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        cni_bin = next(d for d in CNI_BIN_DIRS if (d / "bridge").exists())
        self.containerd_config.write_text(
            (Path(__file__).parent / "containerd.toml")
            .read_text()
            .replace("@ROOT@", str(containerd_root()))
            .replace("@STATE@", str(CONTAINERD_STATE))
            .replace("@SOCKET@", str(CONTAINERD_SOCKET))
            .replace("@SANDBOX_IMAGE@", SANDBOX_IMAGE)
            .replace("@CNI_BIN_DIR@", str(cni_bin))
            .replace("@CNI_CONF_DIR@", str(self.cni_conf_dir))
        )
        conflist = {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": CNI_BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.dir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        _write_json(self.cni_conf_dir / "10-modeldeploy.conflist", conflist)
        _write_json(self.kubelet_config, self.kubelet_configuration(pki))
        _write_json(self.proxy_config, self.proxy_configuration())

    def kubelet_configuration(self, pki: Path) -> dict[str, Any]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This VM has cgroup v1 (with a v2 hierarchy beside it); from 1.35 the kubelet
            # refuses to start there unless told otherwise.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",  # no systemd here; containerd's runc uses cgroupfs too
            "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
            "address": NODE_IP,
            "port": self.ports["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.ports["healthz"],
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            "podLogsDir": str(self.dir / "pod-logs"),
            "volumePluginDir": str(self.kubelet_root / "volume-plugins"),
            "failSwapOn": False,
            # Images come from `ctr import`, never from a registry: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # Other work shares this machine's disk and memory: evict only when really short.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "serializeImagePulls": False,
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
        }

    def proxy_configuration(self) -> dict[str, Any]:
        zero = "0s"  # conntrack settings: leave the machine's as they are
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.proxy_kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": CLUSTER_CIDR,
            "healthzBindAddress": f"127.0.0.1:{self.ports['proxy-healthz']}",
            "metricsBindAddress": f"127.0.0.1:{self.ports['proxy-metrics']}",
            "nodePortAddresses": [f"{NODE_IP}/32"],
            "iptables": {"localhostNodePorts": False, "minSyncPeriod": "0s"},
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": zero,
                "tcpCloseWaitTimeout": zero,
            },
        }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


_RUNNING: set[LocalNode] = set()


@atexit.register
def _stop_all() -> None:
    for node in list(_RUNNING):
        node.stop()


def _stop_all_on_sigterm() -> None:
    """Stop the nodes (and their control planes) on SIGTERM too; see localkube's twin."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _stop_all_and_die)


def _stop_all_and_die(signum: int, _frame: FrameType | None) -> None:
    _stop_all()
    localkube._stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


# ---- prerequisites and machine-wide state ------------------------------------------------------


def check_prerequisites(bin_dir: Path) -> None:
    """Fail early, naming what to install or build, when this machine cannot run a node."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (containerd, kubelet, iptables)")
    for name in (*localkube.COMPONENTS, "kubectl", "kubelet", "kube-proxy"):
        if not (bin_dir / name).is_file():
            problems.append(f"{bin_dir / name} missing: hack/cluster/build.sh kubelet kube-proxy")
    for tool in HOST_BINARIES:
        if not shutil.which(tool):
            problems.append(f"{tool} missing: apt-get install containerd runc iptables iproute2")
    if not any(all((d / p).exists() for p in CNI_PLUGINS) for d in CNI_BIN_DIRS):
        problems.append("CNI plugins missing: apt-get install containernetworking-plugins")
    if problems:
        raise ClusterError("cannot run a node here:\n  " + "\n  ".join(problems))


def find_bin_dir() -> Path:
    """The Kubernetes binaries, a node's included: $MODELDEPLOY_K8S_BIN, else build.sh's."""
    if env := os.environ.get("MODELDEPLOY_K8S_BIN"):
        return Path(env)
    names = (*localkube.COMPONENTS, "kubectl", "kubelet", "kube-proxy")
    out = subprocess.run([str(localkube.BUILD_SH), *names], stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise ClusterError(f"{localkube.BUILD_SH} failed with code {out.returncode}")
    return Path(out.stdout.strip().splitlines()[-1])


def node_holder() -> Path | None:
    """The state dir of the node running on this machine, if one runs."""
    state_dir = _machine_record_state_dir()
    return state_dir if state_dir and running_node_components(state_dir) else None


def read_node_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((state_dir / NODE_STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    return state


def running_node_components(state_dir: Path) -> list[str]:
    state = read_node_state(state_dir) or {"pids": {}, "exes": {}}
    return [
        name
        for name, pid in state["pids"].items()
        if localkube.is_running(pid, Path(state["exes"][name]))
    ]


def log_tail(state_dir: Path, name: str, lines: int = 25) -> str:
    log = state_dir / f"{name}.log"
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return ""
    return f"; last lines of {log}:\n" + "\n".join(tail)


def _get_ok(url: str) -> bool:
    return localkube._get_ok(url)


def _get_json(url: str, ctx: ssl.SSLContext) -> Any:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def node_ready(server: str, ctx: ssl.SSLContext) -> bool:
    node = _get_json(f"{server}/api/v1/nodes/{NODE_NAME}", ctx)
    conditions = (node or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


# ---- teardown ----------------------------------------------------------------------------------


def teardown(state_dir: Path, stop_control_plane: Callable[[], None] | None = None) -> None:
    """Stop the node recorded in state_dir and remove every trace of it from the machine.

    Best effort at every step (a half-started node must go as cleanly as a healthy one); what
    could not be removed is reported on stderr at the end.
    """
    state = read_node_state(state_dir)
    cp_state = localkube.read_state(state_dir)
    if state is None and cp_state is None:
        return
    state = state or {"pids": {}, "exes": {}, "sysctls": {}}
    bin_dir = Path(cp_state["bin_dir"]) if cp_state else None
    problems: list[str] = []
    running = running_node_components(state_dir)
    with _step("draining the node"):
        if "kubelet" in running and "containerd" in running and cp_state:
            problems += drain(state_dir, bin_dir)
    for name in ("kubelet", "kube-proxy"):
        _stop_recorded(state, name)
    with _step("removing containers"):
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
    with _step("cleaning up the host"):
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
        localkube.stop_recorded(state_dir)
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
    exe = Path(state["exes"][name])
    localkube.stop_group(pid, lambda: not localkube.is_running(pid, exe), timeout=20)


def drain(state_dir: Path, bin_dir: Path | None) -> list[str]:
    """Delete the node's pods through the API and wait until the kubelet has stopped them all,
    so each pod's network is torn down by CNI as usual; then delete the Node."""
    if bin_dir is None:
        return []
    cluster = localkube.Cluster(state_dir / "admin.kubeconfig", bin_dir / "kubectl")
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


# ---- CLI ---------------------------------------------------------------------------------------


def _up(state_dir: Path) -> int:
    if (holder := node_holder()) == state_dir and len(running_node_components(state_dir)) == len(
        NODE_COMPONENTS
    ):
        print(f"localnode: already up ({state_dir})", file=sys.stderr)
    else:
        if holder is None:
            teardown(state_dir)  # the remains of a half-dead node
        node = LocalNode(find_bin_dir(), state_dir)
        started = time.monotonic()
        node.start()
        node.detach()
        localkube.SHARED_KUBECONFIG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(node.kubeconfig, localkube.SHARED_KUBECONFIG)
        print(
            f"localnode: up at {node.server} with node {NODE_NAME} ({NODE_IP}) "
            f"in {time.monotonic() - started:.1f}s; `down` stops it",
            file=sys.stderr,
        )
    print(f"export KUBECONFIG={state_dir / 'admin.kubeconfig'}")
    return 0


def _down(state_dir: Path) -> int:
    if read_node_state(state_dir) is None and localkube.read_state(state_dir) is None:
        # The machine's node may come from elsewhere: a test session that was killed -9.
        recorded = _machine_record_state_dir()
        if recorded is None or read_node_state(recorded) is None:
            print(f"localnode: nothing running from {state_dir}", file=sys.stderr)
            return 0
        print(f"localnode: stopping the machine's node, from {recorded}", file=sys.stderr)
        state_dir = recorded
    teardown(state_dir)
    print("localnode: stopped", file=sys.stderr)
    return 0


def _machine_record_state_dir() -> Path | None:
    try:
        return Path(json.loads(MACHINE_RECORD.read_text())["state_dir"])
    except (OSError, ValueError, KeyError):
        return None


def _status(state_dir: Path) -> int:
    state = read_node_state(state_dir)
    cp = localkube.read_state(state_dir)
    if state is None or cp is None:
        print(f"down (no node recorded in {state_dir})")
        return 1
    running = running_node_components(state_dir)
    for name in NODE_COMPONENTS:
        status = "running" if name in running else "stopped"
        print(f"{name:24} {status:8} pid {state['pids'].get(name)}")
    code = localkube._status(state_dir)
    ready = node_ready(cp["server"], localkube.admin_context(state_dir / "pki"))
    print(f"{'node ' + NODE_NAME:24} {'Ready' if ready else 'NotReady'}  {NODE_IP}")
    return 0 if code == 0 and ready and len(running) == len(NODE_COMPONENTS) else 1


def _load_images(names: Sequence[str], if_running: bool) -> int:
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
            return _load_images(args.images, args.if_running)
        commands = {"up": _up, "down": _down, "status": _status}
        return commands[args.command](state_dir)
    except ClusterError as err:
        print(f"localnode: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
