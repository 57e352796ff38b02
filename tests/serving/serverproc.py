"""A server as a child process on loopback: a free port, its output in a log file, readiness by
polling an HTTP URL while watching the process, and a stop by signal that ends in SIGKILL.

One start-up for the two places that run servers: tests/serving/servekit.py (modelserve under
test) and benchmarks/serving.py (modelserve and its peers under load). It lives here because
pytest's pythonpath already holds this folder and the tests are its main users; the benchmark,
a script, puts this folder on sys.path. Standard library only: the benchmark imports it before
anything else, and a probe of its own keeps it free of any HTTP client's quirks.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path


class NotReadyError(Exception):
    """The server exited, or did not answer ready in time (the message says which)."""


class ExitedError(NotReadyError):
    """The server exited before it was ready."""

    def __init__(self, returncode: int) -> None:
        super().__init__(f"exited with {returncode}")
        self.returncode = returncode


def free_port() -> int:
    """A port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(
    command: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    own_group: bool = False,
) -> subprocess.Popen[bytes]:
    """Start command with stdout and stderr in log_path (env None: this process's).

    own_group: in a process group of its own, so stop() can end what the server forks (worker
    processes of some peers); a test that signals the server itself leaves it False.
    """
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=own_group,
        )


def _probe_opener() -> urllib.request.OpenerDirector:
    """No proxy (the servers are on loopback), and no certificate check (test servers use
    self-signed ones)."""
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=unverified)
    )


_PROBE = _probe_opener()


def answers_ok(url: str) -> bool:
    """Whether url answers 200 within a second (http or https)."""
    try:
        with _PROBE.open(url, timeout=1.0) as response:
            return int(response.status) == 200
    except (OSError, http.client.HTTPException):  # refused, not ready (HTTPError), TLS
        return False


def wait_ready(
    url: str, process: subprocess.Popen[bytes], timeout: float, interval: float = 0.05
) -> None:
    """Poll url until it answers 200; raise ExitedError if the process ends first,
    NotReadyError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ExitedError(process.returncode)
        if answers_ok(url):
            return
        time.sleep(interval)
    raise NotReadyError(f"not ready after {timeout:g}s")


def stop(
    process: subprocess.Popen[bytes],
    sig: int = signal.SIGTERM,
    timeout: float = 20.0,
    *,
    group: bool = False,
) -> int | None:
    """Send sig (to the process group when group is set) and wait for the exit code; after
    timeout seconds SIGKILL it and return None: the caller decides whether that is a failure."""
    send = (lambda s: os.killpg(process.pid, s)) if group else process.send_signal
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            send(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            send(signal.SIGKILL)
        process.wait()
        return None
