"""`modeldeploy status` (and `kubectl modeldeploy status`) against a real API server, with the
operator running: the real command, as a user runs it, on what the operator wrote.

On the control-plane tier no pod runs (no node), so a revision shows 0 of its pods Ready and
the object stays Progressing: what matters here is that the command reads and shows it.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from integration import test_operator
from integration.operator_run import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "canary.yaml"
VENV_BIN = Path(sys.executable).parent

operator_process = test_operator.operator
"""test_operator's fixture: this module's own `modeldeploy run` process, with a 2 s resync."""


def status_of(crd, namespace: str) -> dict[str, Any]:
    out = crd.kubectl("get", "md", "iris", "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out).get("status") or {})


@pytest.fixture
def iris(crd, operator_process, namespace) -> str:  # noqa: ARG001 (it writes the status)
    """The example canary applied, once the operator has written its status: its revision."""
    crd.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    return str(wait_for(lambda: (status_of(crd, namespace).get("stableRevision") or {})
                        .get("name"), "the operator's status"))  # fmt: skip


def env_for(crd, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return {**env, "KUBECONFIG": str(crd.kubeconfig), **extra}


def status_cli(crd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "modeldeploy"), "status", *args], env=env_for(crd),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_status_shows_the_revision_its_pods_and_the_phase(crd, namespace, iris):
    wait_for(lambda: "RevisionCreated" in status_cli(crd, "iris", "-n", namespace).stdout,
             "the operator's RevisionCreated Event")  # fmt: skip
    out = status_cli(crd, "iris", "-n", namespace)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "\x1b[" not in text  # piped: plain
    lines = text.splitlines()
    assert f"Namespace:     {namespace}" in lines
    assert any(line.startswith("Phase:") and "Progressing" in line for line in lines), text
    assert "Strategy:      Canary" in lines
    # No node on this tier: the revision's 2 pods exist on paper, none Ready.
    [row] = [line for line in lines if iris in line and line.split()[0] == "stable"]
    assert row.split()[:3] == ["stable", iris, "v1"]
    assert "0/2" in row.split()
    assert any(line.startswith("Replicas:") and "0/2 ready" in line for line in lines), text
    assert any("RevisionCreated" in line and iris in line for line in lines), text


def test_kubectl_runs_it_as_a_plugin(crd, namespace, iris):
    kubectl = str(crd.kubectl_bin)
    env = env_for(crd, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    out = subprocess.run([kubectl, "modeldeploy", "status", "iris", "-n", namespace], env=env,
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert iris in out.stdout
    listed = subprocess.run([kubectl, "plugin", "list"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert "kubectl-modeldeploy" in listed.stdout


def test_an_object_that_does_not_exist_is_an_error_like_kubectl_s(crd, namespace):
    out = status_cli(crd, "nosuch", "-n", namespace)
    assert out.returncode == 1
    assert out.stdout == ""
    assert f"modeldeployment {namespace}/nosuch not found" in out.stderr


def _on_a_terminal(crd, args: list[str], **env: str) -> str:
    """The command's output when its stdout is a terminal (a pty)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(VENV_BIN / "modeldeploy"), "status", *args],
                            env=env_for(crd, TERM="xterm", **env), stdout=follower,
                            stderr=subprocess.PIPE)  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    return b"".join(chunks).decode()


def test_colour_on_a_terminal_and_none_with_no_color(crd, namespace, iris):
    coloured = _on_a_terminal(crd, ["iris", "-n", namespace])
    assert "\x1b[33m" in coloured  # Progressing in yellow
    assert iris in coloured
    plain = _on_a_terminal(crd, ["iris", "-n", namespace], NO_COLOR="1")
    assert "\x1b[3" not in plain
    assert iris in plain


@pytest.mark.usefixtures("iris")
def test_watch_prints_a_frame_per_change_and_ctrl_c_exits_0(crd, namespace):
    proc = subprocess.Popen(
        [str(VENV_BIN / "modeldeploy"), "status", "iris", "-n", namespace, "--watch"],
        env=env_for(crd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    frames = lambda: sum(line.startswith("Name:") for line in lines)  # noqa: E731
    try:
        wait_for(lambda: frames() >= 1, "the first frame")
        first = frames()
        assert not any(line.startswith("Phase:") and "Paused" in line for line in lines)
        crd.kubectl("patch", "md", "iris", "-n", namespace, "--type=merge",
                    "-p", '{"spec": {"paused": true}}')  # fmt: skip
        wait_for(lambda: any(line.startswith("Phase:") and "Paused" in line for line in lines),
                 "a frame with the operator's Paused phase")  # fmt: skip
        assert frames() > first
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
        reader.join(timeout=5)
    errors = proc.stderr.read() if proc.stderr else ""
    assert code == 0, errors
    assert "Traceback" not in errors
