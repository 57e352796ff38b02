"""What a local node does to this machine, and how all of it is undone: the node address and
forwarding rules, the images in containerd, and the force-removal of whatever a node can leave
behind (tasks, shims, network namespaces, mounts, iptables chains, cgroups, files).

Used by localcluster.node and localcluster.teardown; everything here is machine-wide, as there is
one node per machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from localcluster.cluster import ClusterError
from localcluster.paths import CACHE_ROOT, REPO_ROOT

IMAGES_CACHE = CACHE_ROOT / "images"
IMAGES_BUILD = REPO_ROOT / "hack" / "images" / "build.sh"

# The node's address: on `lo`, so it is local to every process here and reachable from pods (their
# default route leads to this host), yet never answers on an outside network.
NODE_IP = os.environ.get("MODELDEPLOY_NODE_IP", "10.254.254.1")
POD_CIDR = "10.244.0.0/24"  # this node's pods (host-local IPAM)
CLUSTER_CIDR = "10.244.0.0/16"
CNI_NETWORK = "modeldeploy"
CNI_BRIDGE = "mdcni0"
CNI_BIN_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
# Machine-wide: one node per machine, recorded in RUN_DIR/node.json.
RUN_DIR = Path("/run/modeldeploy")
CONTAINERD_STATE = RUN_DIR / "containerd"
CONTAINERD_SOCKET = RUN_DIR / "containerd.sock"
MACHINE_RECORD = RUN_DIR / "node.json"
FORWARD_CHAIN = "MODELDEPLOY-FORWARD"  # lets pod traffic through a FORWARD policy of DROP
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10.1"  # built from source by hack/images/build.sh
IMAGE_REFS = {  # image name in hack/images/build.sh -> reference containerd knows it by
    "pause": SANDBOX_IMAGE,
    "echo": "docker.io/modeldeploy/echo:dev",
    "operator": "docker.io/modeldeploy/operator:dev",
    "serving": "docker.io/modeldeploy/serving:dev",
    "coredns": "registry.k8s.io/coredns/coredns:v1.13.1",  # cluster DNS (cluster_dns.py)
}
# What the kubelet (kernel tunables), the CNI bridge plugin (forwarding) and this module change;
# recorded at `up` and put back at `down`.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# Paths outside the state dir that the kubelet (its device-plugin socket is always under
# /var/lib/kubelet, whatever its root dir), containerd's CRI plugin (libcni's result cache, the
# shims' sockets and runc's state) and the kubelet's log links use: `down` removes what it finds
# of this node's there, and each of these directories if `up` had to create it.
HOST_DIRS = (
    Path("/var/lib/kubelet"),
    Path("/var/lib/cni"),
    Path("/run/containerd"),  # shim sockets in s/: Docker's containerd puts its own there too
    Path("/run/containerd/runc"),  # runc's state for namespace k8s.io
    Path("/var/log/containers"),
)


def containerd_root() -> Path:
    """containerd's content and snapshots: in the cache, so images survive `down`."""
    return CACHE_ROOT / "node" / "containerd"


def run_cmd(*cmd: str | Path, check: bool = True, timeout: float = 60) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(map(str, cmd))} failed: {proc.stderr.strip()}")
    return proc.stdout


# ---- host networking ---------------------------------------------------------------------------


def read_sysctls() -> dict[str, str]:
    values = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = (Path("/proc/sys") / key).read_text().strip()
    return values


def write_sysctls(values: dict[str, str]) -> None:
    for key, value in values.items():
        with contextlib.suppress(OSError):
            (Path("/proc/sys") / key).write_text(value + "\n")


def setup_host_network() -> None:
    """The node address on lo, forwarding, bridged traffic through iptables, and a FORWARD rule
    for pod traffic (Docker, if it manages iptables, sets FORWARD's policy to DROP)."""
    if NODE_IP not in run_cmd("ip", "-o", "addr", "show", "dev", "lo"):
        run_cmd("ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")
    write_sysctls({"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"})
    if not _iptables("-t", "filter", "-n", "-L", FORWARD_CHAIN, check=False)[0]:
        _iptables("-t", "filter", "-N", FORWARD_CHAIN)
        for flag in ("-s", "-d"):
            _iptables("-A", FORWARD_CHAIN, flag, CLUSTER_CIDR, "-j", "ACCEPT")
    jump = ("FORWARD", "-m", "comment", "--comment", "modeldeploy pods", "-j", FORWARD_CHAIN)
    if not _iptables("-C", *jump, check=False)[0]:
        _iptables("-I", *jump)


def _iptables(*args: str, check: bool = True) -> tuple[bool, str]:
    proc = subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise ClusterError(f"iptables {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.returncode == 0, proc.stdout


BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
OUR_CHAINS = ("KUBE-", "MODELDEPLOY-")  # kube-proxy's and the kubelet's, and ours


def cleanup_iptables(bin_dir: Path | None) -> list[str]:
    """Remove kube-proxy's, the kubelet's, our CNI network's and our own rules and chains.

    Only those: Docker's chains and anything else on the machine stay as they are.
    """
    problems = []
    if bin_dir is not None and (bin_dir / "kube-proxy").exists():
        proc = subprocess.run(
            [str(bin_dir / "kube-proxy"), "--cleanup"], capture_output=True, text=True
        )
        if proc.returncode != 0:
            problems.append(f"kube-proxy --cleanup: {proc.stderr.strip()[-300:]}")
    cni_comment = f'name: "{CNI_NETWORK}" '
    for table in ("filter", "nat", "mangle"):
        chains: set[str] = set()
        for rule in _iptables("-t", table, "-S", check=False)[1].splitlines():
            words = shlex.split(rule)
            if words[0] == "-N" and words[1].startswith(OUR_CHAINS):
                chains.add(words[1])
            if words[0] != "-A" or "-j" not in words:
                continue
            target = words[words.index("-j") + 1]
            comment = words[words.index("--comment") + 1] if "--comment" in words else ""
            ours_cni = target.startswith("CNI-") and comment.startswith(cni_comment)
            if not (ours_cni or target.startswith(OUR_CHAINS)):
                continue
            if ours_cni:
                chains.add(target)
            if (
                words[1] in BUILTIN_CHAINS
                and not _iptables("-t", table, "-D", *words[1:], check=False)[0]
            ):
                problems.append(f"iptables -t {table} {rule}")
        for chain in chains:
            _iptables("-t", table, "-F", chain, check=False)
        for chain in chains:
            if not _iptables("-t", table, "-X", chain, check=False)[0]:
                problems.append(f"iptables -t {table} -X {chain}")
    return problems


# ---- images ------------------------------------------------------------------------------------


def ctr(*args: str, timeout: float = 300) -> str:
    return run_cmd("ctr", "--address", CONTAINERD_SOCKET, "-n", "k8s.io", *args, timeout=timeout)


def containerd_answers() -> bool:
    try:
        run_cmd("ctr", "--address", CONTAINERD_SOCKET, "version", timeout=10)
    except (ClusterError, subprocess.TimeoutExpired):
        return False
    return True


def load_images(names: Sequence[str] = (), required: Sequence[str] = ()) -> list[str]:
    """Import the images hack/images/build.sh saved into the cache, unless already loaded.

    Every cached image is considered when names is empty; one in required is first built when
    the cache lacks it. Returns the names imported.
    """
    for name in required:
        if not (IMAGES_CACHE / f"{name}.tar").exists():
            proc = subprocess.run([str(IMAGES_BUILD), "--no-load", name], stdout=sys.stderr)
            if proc.returncode != 0:
                raise ClusterError(f"{IMAGES_BUILD} {name} failed")
    if not names:
        names = [p.stem for p in sorted(IMAGES_CACHE.glob("*.tar")) if p.stem in IMAGE_REFS]
    record_file = containerd_root() / "modeldeploy-images.json"
    try:
        record: dict[str, str] = json.loads(record_file.read_text())
    except (OSError, ValueError):
        record = {}
    present = set(ctr("images", "ls", "-q").split())
    loaded = []
    for name in names:
        tarball = IMAGES_CACHE / f"{name}.tar"
        image_id = (IMAGES_CACHE / f"{name}.tar.id").read_text().strip()
        if record.get(name) == image_id and IMAGE_REFS[name] in present:
            continue
        ctr("images", "import", str(tarball))
        record[name] = image_id
        record_file.write_text(json.dumps(record, indent=2) + "\n")
        loaded.append(name)
    return loaded


def remove_containers() -> tuple[set[str], list[str]]:
    """Kill and delete every task and container in containerd's k8s.io namespace.

    Returns the network namespaces the pod sandboxes used (gone after a clean drain) and
    what failed.
    """
    netns: set[str] = set()
    problems = []
    try:
        ids = ctr("containers", "ls", "-q", timeout=20).split()
    except (ClusterError, subprocess.TimeoutExpired) as err:
        return netns, [f"listing containers: {err}"]
    for cid in ids:
        with contextlib.suppress(ClusterError, subprocess.TimeoutExpired, ValueError):
            info = json.loads(ctr("containers", "info", cid, timeout=20))
            for ns in info.get("Spec", {}).get("linux", {}).get("namespaces", []):
                if ns.get("type") == "network" and ns.get("path", "").startswith("/var/run/netns"):
                    netns.add(ns["path"])
        with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
            ctr("tasks", "kill", "-s", "SIGKILL", cid, timeout=20)
        with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
            ctr("tasks", "delete", "-f", cid, timeout=20)
        try:
            ctr("containers", "delete", cid, timeout=20)
        except (ClusterError, subprocess.TimeoutExpired) as err:
            problems.append(f"container {cid}: {err}")
    return netns, problems


def kill_shims() -> list[str]:
    """SIGKILL containerd shims of this node's containerd that outlived it (never others'), and
    remove their sockets (containerd 1.6 names them /run/containerd/s/sha256(address/ns/id))."""
    problems = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"containerd-shim-runc-v2")
            and (os.fsencode(CONTAINERD_SOCKET) in argv)
        ):
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                continue
            problems.append(f"killed a leftover shim, pid {proc.name}")
            args = [os.fsdecode(a) for a in argv]
            if "-id" in args and "-namespace" in args:
                key = f"{CONTAINERD_SOCKET}/{args[args.index('-namespace') + 1]}"
                key += f"/{args[args.index('-id') + 1]}"
                digest = hashlib.sha256(key.encode()).hexdigest()
                Path("/run/containerd/s", digest).unlink(missing_ok=True)
    return problems


def _cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for top in Path("/sys/fs/cgroup").glob(f"*/{name}"):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in procs.read_text().split())
    return pids


def pod_network_namespaces() -> set[str]:
    """The /run/netns entries (CRI's pinned pod namespaces) of processes in kubepods."""
    inodes = set()
    for pid in _cgroup_pids("kubepods"):
        with contextlib.suppress(OSError):
            inodes.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
    found = set()
    for ns in Path("/run/netns").glob("cni-*"):
        with contextlib.suppress(OSError):
            if os.stat(ns).st_ino in inodes:
                found.add(str(ns))
    return found


def kill_cgroup(name: str, timeout: float = 10.0) -> list[str]:
    """SIGKILL every process in the cgroup `name` (any hierarchy) until none is left."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while pids := _cgroup_pids(name):
        for pid in pids - killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= pids
        if time.monotonic() > deadline:
            return [f"processes {sorted(pids)} in {name} survived SIGKILL"]
        time.sleep(0.1)
    return [f"killed {len(killed)} leftover container processes"] if killed else []


def remove_cni_results() -> None:
    """libcni's cached results of this node's pods (CNI DEL removes them when it runs)."""
    results = Path("/var/lib/cni/results")
    for result in results.glob(f"{CNI_NETWORK}-*-eth0"):
        sandbox = result.name.removeprefix(f"{CNI_NETWORK}-").removesuffix("-eth0")
        (results / f"cni-loopback-{sandbox}-lo").unlink(missing_ok=True)
        result.unlink(missing_ok=True)


def mounts_under(*roots: Path) -> list[str]:
    """Mount points at or under roots, deepest first."""
    found = []
    prefixes = [str(r.resolve()) if r.exists() else str(r) for r in roots]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
            found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def unmount_under(*roots: Path) -> list[str]:
    problems = []
    for point in mounts_under(*roots):
        proc = subprocess.run(["umount", point], capture_output=True, text=True)
        if proc.returncode != 0:
            lazy = subprocess.run(["umount", "-l", point], capture_output=True, text=True)
            if lazy.returncode != 0:
                problems.append(f"mount {point}: {lazy.stderr.strip()}")
    return problems


def remove_cgroups(name: str) -> list[str]:
    """rmdir the cgroup `name` (the kubelet's kubepods) in every v1 hierarchy, leaves first."""
    problems = []
    for top in Path("/sys/fs/cgroup").glob(f"*/{name}"):
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for cgroup in [*dirs, top]:
            try:
                cgroup.rmdir()
            except OSError as err:
                problems.append(f"cgroup {cgroup}: {err.strerror}")
    return problems


def remove_host_dirs(created: list[Path]) -> None:
    """Remove this node's files outside the state dir, and the directories `up` created."""
    Path("/var/lib/kubelet/device-plugins/kubelet.sock").unlink(missing_ok=True)
    shutil.rmtree("/run/containerd/runc/k8s.io", ignore_errors=True)  # runc's state, ours
    for top in created:
        for root, _dirs, _files in os.walk(top, topdown=False):
            with contextlib.suppress(OSError):  # kept if anything else put files there
                Path(root).rmdir()


def remove_container_log_links(pod_logs: Path) -> None:
    """The kubelet links /var/log/containers/*.log to the pods' logs: remove links to ours."""
    for link in Path("/var/log/containers").glob("*.log"):
        with contextlib.suppress(OSError):
            if link.is_symlink() and str(Path(os.readlink(link))).startswith(str(pod_logs)):
                link.unlink()
    shutil.rmtree(pod_logs, ignore_errors=True)
