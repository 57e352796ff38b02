"""`modeldeploy run` as its own process, as it runs in its pod: started, watched, stopped.

Shared by the integration modules that need a real operator process (test_operator.py and those
that borrow its fixture, test_status_cli.py, test_ha.py's two replicas), so that how the process
is started, when it counts as up and how a test waits on it are written once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    """A loopback port nothing listens on now (the operator binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(port: int) -> bool:
    """Whether the operator's liveness endpoint on `port` answers 200."""
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
    except OSError:
        return False


class Operator:
    """A running `modeldeploy run` process: its metrics, its log, and how to stop it."""

    def __init__(self, proc: subprocess.Popen[str], metrics_port: int, log: Path) -> None:
        self.proc, self.metrics_port, self.log = proc, metrics_port, log

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return str(urllib.request.urlopen(url, timeout=5).read().decode())

    def writes(self) -> dict[str, float]:
        """modeldeploy_api_writes_total by its {verb, kind} labels, from /metrics (a dict, so a
        failing comparison says which kind of write happened)."""
        return {line.rsplit(" ", 1)[0].removeprefix("modeldeploy_api_writes_total"):
                float(line.rsplit(" ", 1)[1]) for line in self.metrics().splitlines()
                if line.startswith("modeldeploy_api_writes_total{")}  # fmt: skip

    def quiet_writes(self, window: float, timeout: float = 90) -> dict[str, float]:
        """The write counters once they have stood still for `window` seconds. The operator is
        shared by this module's tests and earlier tests' namespaces are deleted without waiting,
        so their teardown (the operator seeing a ModelDeployment go) can still be writing when a
        later test starts counting; an operator that writes on every resync never goes quiet and
        fails here."""
        deadline = time.monotonic() + timeout
        last = self.writes()
        while time.monotonic() < deadline:
            time.sleep(window)
            now = self.writes()
            if now == last:
                return now
            last = now
        tail = self.log.read_text()[-3000:]
        pytest.fail(f"the operator kept writing for {timeout}s: {last}\n{tail}")

    def stop(self) -> None:
        """SIGTERM, as the kubelet stops its pod, then SIGKILL after 20 s; nothing if it is
        gone already (a test killed it)."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_operator(kubeconfig: Path | str, workdir: Path, *args: str,
                   env: Mapping[str, str]) -> Operator:  # fmt: skip
    """`modeldeploy run ARGS` with its log in workdir/operator.log and its own metrics and
    liveness ports, once its liveness endpoint answers (if it never does, the test fails
    with the log's tail)."""
    log = workdir / "operator.log"
    metrics_port, liveness_port = free_port(), free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modeldeploy.cli", "run", *args,
             f"--metrics-port={metrics_port}", f"--liveness-port={liveness_port}"],
            env={**os.environ, "KUBECONFIG": str(kubeconfig), **env},
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    op = Operator(proc, metrics_port, log)
    wait_for(lambda: healthy(liveness_port), "the operator's liveness endpoint", op)
    return op


def wait_for(check: Callable[[], Any], what: str, op: Operator | None = None, timeout: float = 60):
    """`check()`'s first truthy result, polled every 0.25 s; past `timeout` the test fails,
    with the operator's log tail when `op` is given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    tail = op.log.read_text()[-3000:] if op else ""
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{tail}")
