"""The local-cluster package's shared pieces, on real processes and real openssl: one way to
start, await and stop a component, one registry that stops what this process started on exit
or SIGTERM, a PKI whose certificates verify, and modules that use each other's public names only.

No Kubernetes binary is needed: the components here are `sh` and `sleep`.
"""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

CLUSTER_DIR = Path(__file__).resolve().parents[2] / "hack" / "cluster"
sys.path.insert(0, str(CLUSTER_DIR))
from localcluster import pki, processes  # noqa: E402
from localcluster.cluster import ClusterError  # noqa: E402


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie, whose cmdline is empty, does not)."""
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is pgid."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and alive(int(stat.parent.name)):
            found.append(int(stat.parent.name))
    return found


def eventually(cond: Callable[[], bool]) -> bool:
    """Whether cond holds within 10 s (the package's own poll, which these tests also cover)."""
    return processes.wait_until(cond, 10.0)


def test_stop_group_ends_the_leader_and_what_it_left_in_its_group() -> None:
    leader = subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300 & wait"], start_new_session=True)
    assert eventually(lambda: len(group_members(leader.pid)) == 3)
    processes.stop_group(leader.pid, lambda: leader.poll() is not None, timeout=5)
    assert leader.returncode == -signal.SIGTERM
    assert eventually(lambda: not group_members(leader.pid))


def test_launch_reports_a_component_that_dies_with_its_log(tmp_path: Path) -> None:
    components = processes.Components(tmp_path, timeout=10, recorded=lambda: None)
    with pytest.raises(ClusterError, match=r"(?s)broken exited with code 3.*no config here"):
        components.launch("broken", Path("/bin/sh"), ["-c", "echo no config here; exit 3"],
                          ready=lambda: False)  # fmt: skip
    components.stop()


def test_launch_records_each_component_before_awaiting_it(tmp_path: Path) -> None:
    """`down` must find even a component that never became ready: the record comes first."""
    seen: list[dict[str, int]] = []
    components = processes.Components(tmp_path, timeout=10, recorded=lambda: None)
    components.recorded = lambda: seen.append(dict(components.pids))
    try:
        components.launch("first", Path("/bin/sleep"), ["300"], ready=None)
        components.launch("second", Path("/bin/sleep"), ["300"], ready=lambda: bool(seen))
        assert [list(s) for s in seen] == [["first"], ["first", "second"]]
        assert components.exes == {"first": "/bin/sleep", "second": "/bin/sleep"}
        pids = list(components.pids.values())
    finally:
        components.stop()
    assert not any(alive(pid) for pid in pids)
    assert components.pids == {}


OWNER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {cluster_dir!r})
from localcluster import processes

class Owner:
    def __init__(self, name):
        self.components = processes.Components(Path({state!r}), 10, recorded=lambda: None)
        self.name = name
    def start(self):
        processes.own(self)
        self.components.launch(self.name, Path("/bin/sleep"), ["300"], ready=None)
    def stop(self):
        processes.disown(self)
        with open({order!r}, "a") as out:
            out.write(self.name + "\\n")
        self.components.stop()

owners = [Owner(name) for name in ("node", "control-plane")]
for owner in owners:
    owner.start()
print(" ".join(str(p) for o in owners for p in o.components.pids.values()), flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize("ending", ["sigterm", "exit"])
def test_owned_components_stop_with_their_process(tmp_path: Path, ending: str) -> None:
    """SIGTERM (a CI timeout, a plain kill) skips atexit: both must stop what was started, the
    first owner first (a node stops its own control plane), and the process dies of it."""
    order = tmp_path / "order"
    script = OWNER.format(cluster_dir=str(CLUSTER_DIR), state=str(tmp_path), order=str(order))
    if ending == "exit":
        script = script.replace("time.sleep(300)", "sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout is not None
    assert child.stdin is not None
    pids = [int(p) for p in child.stdout.readline().split()]
    assert len(pids) == 2
    assert eventually(lambda: all(alive(p) for p in pids))  # cmdline is set after exec
    if ending == "sigterm":
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == -signal.SIGTERM
    else:
        child.stdin.close()
        assert child.wait(30) == 0
    assert order.read_text().split() == ["node", "control-plane"]
    assert eventually(lambda: not any(alive(p) for p in pids))


def test_pki_certificates_verify_and_kubeconfigs_embed_them(tmp_path: Path) -> None:
    clients = {"admin": "/O=system:masters/CN=admin"}
    pki.make_pki(tmp_path, "IP:127.0.0.1,DNS:localhost", clients)
    pki.sign_certificate(tmp_path, "kubelet", "/CN=system:node:x", "clientAuth")
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"),
         *(str(tmp_path / f"{n}.crt") for n in ("apiserver", "admin", "kubelet"))],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    assert (tmp_path / "sa.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    config = tmp_path / "admin.kubeconfig"
    pki.write_kubeconfig(config, "https://127.0.0.1:6443", tmp_path, "admin")
    assert config.stat().st_mode & 0o777 == 0o600
    user = json.loads(config.read_text())["users"][0]
    assert user["name"] == "admin"
    assert user["user"]["client-key-data"]
    before = (tmp_path / "ca.crt").read_bytes()
    pki.make_pki(tmp_path, "IP:127.0.0.1", clients)  # kept: etcd's data was made with it
    assert (tmp_path / "ca.crt").read_bytes() == before


def _private_uses(path: Path, local: set[str]) -> list[str]:
    """`from M import _x`, `M._x` and sys.path changes in path, M one of the local modules."""
    tree = ast.parse(path.read_text())
    aliases: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for name in node.names:
                if name.name.split(".")[-1] in local:
                    aliases[name.asname or name.name] = name.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = node.module.split(".")[-1]
            for name in node.names:
                if name.name in local:
                    aliases[name.asname or name.name] = name.name
                elif module in local and name.name.startswith("_"):
                    found.append(f"{path.name}:{node.lineno} imports {node.module}.{name.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in aliases and node.attr.startswith("_") and node.attr != "__file__":
                found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
            if node.value.id == "sys" and node.attr == "path" and path.parent.name != "node":
                found.append(f"{path.name}:{node.lineno} changes sys.path")
    return found


def test_cluster_modules_use_each_others_public_names_only() -> None:
    """One module's underscore names are its own; and only the entry script that lives apart
    (node/localnode.py, whose folder is not hack/cluster) puts the package on sys.path."""
    files = sorted(CLUSTER_DIR.rglob("*.py"))
    local = {p.stem for p in files} | {"localcluster"}
    found = [use for path in files for use in _private_uses(path, local)]
    assert found == []
    node_scripts = [p for p in files if p.parent.name == "node"]
    assert [p.name for p in node_scripts] == ["localnode.py"], "node/ holds the entry script only"


def test_entry_scripts_are_thin() -> None:
    """The commands stay where the docs say; the code lives once, in the package."""
    for script in (CLUSTER_DIR / "localkube.py", CLUSTER_DIR / "node" / "localnode.py"):
        tree = ast.parse(script.read_text())
        defs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert defs == [], f"{script.name} defines {[d.name for d in defs]}"
        assert len(script.read_text().splitlines()) < 80


def test_entry_scripts_answer_help() -> None:
    for script in ("localkube.py", "node/localnode.py"):
        proc = subprocess.run([sys.executable, str(CLUSTER_DIR / script), "--help"],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "{up,down,status" in proc.stdout
