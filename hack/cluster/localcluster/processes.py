"""Components as processes, started, awaited and stopped one way for both tiers.

Each component runs in its own process group (so stopping it also ends whatever it forked),
logs to `<name>.log`, and is awaited with a readiness probe while every sibling is watched: a
component that dies fails the start at once, with its log's tail. What a process starts it
registers with `own`; one registry stops all of it at exit and on SIGTERM (a CI timeout, a
plain kill), which skips atexit. `LocalTier` is a cluster run that way: a tier's start, stop and
detach go through it, so no tier can forget to register or to stop what half-started.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import functools
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Protocol, Self

from localcluster.cluster import Cluster, ClusterError


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Report a step and its duration on stderr: `starting etcd... ok (0.8s)`."""
    print(f"{what}... ", end="", file=sys.stderr, flush=True)
    began = time.monotonic()
    try:
        yield
    except BaseException:
        print("failed", file=sys.stderr, flush=True)
        raise
    print(f"ok ({time.monotonic() - began:.1f}s)", file=sys.stderr, flush=True)


def get_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    """Whether url answers 200: the readiness probe of every component with an HTTP endpoint."""
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            return int(resp.status) == 200
    except (OSError, http.client.HTTPException):  # refused, not ready (HTTPError), TLS
        return False


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now; all held open together so none comes back twice."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    """Poll cond until it holds (True) or timeout seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop_group(pgid: int, gone: Callable[[], bool], timeout: float = 15.0) -> None:
    """SIGTERM a process group, SIGKILL it if its leader outlives timeout; idempotent."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
        if not wait_until(gone, timeout):
            os.killpg(pgid, signal.SIGKILL)
            wait_until(gone, 5.0)
        os.killpg(pgid, signal.SIGKILL)  # whatever the leader left behind in its group


def is_running(pid: int, exe: Path) -> bool:
    """Whether pid is a live process of exe: a recycled pid is never mistaken for ours."""
    try:  # a zombie's cmdline is empty, so it does not count as running
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return os.fsdecode(argv0) == str(exe)


def stop_recorded(pid: int, exe: Path, timeout: float = 15.0) -> None:
    """Stop a component that another process (a finished `up`) started and recorded."""
    stop_group(pid, lambda: not is_running(pid, exe), timeout)


def running(pids: Mapping[str, int], exe: Callable[[str], Path]) -> list[str]:
    """Names of the recorded components whose processes still run, in the record's order;
    exe(name) is the executable the component was started from."""
    return [name for name, pid in pids.items() if is_running(pid, exe(name))]


def read_record(path: Path) -> dict[str, Any] | None:
    """A state file a start wrote (pids, binaries, ...), or None when there is none."""
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return record


def write_record(path: Path, record: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=2) + "\n")


def log_tail(log: Path, lines: int = 25) -> str:
    """The end of a component's log, for an error message (nothing if there is no log)."""
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return ""
    return f"; last lines of {log}:\n" + "\n".join(tail)


class Components:
    """The components one tier started, in start order, each in its own process group."""

    def __init__(self, log_dir: Path, timeout: float, recorded: Callable[[], None]) -> None:
        """timeout: per readiness wait (a loaded 2-core machine needs the slack); recorded:
        called after each start, before the wait, to write the pids where `down` finds them."""
        self.log_dir = log_dir
        self.timeout = timeout
        self.recorded = recorded
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._exes: dict[str, str] = {}

    @property
    def pids(self) -> dict[str, int]:
        """Process ids (each one also its process group's id), in start order."""
        return {name: proc.pid for name, proc in self._procs.items()}

    @property
    def exes(self) -> dict[str, str]:
        """The executable each component runs, which tells its pid from a recycled one."""
        return dict(self._exes)

    def launch(
        self, name: str, exe: Path, args: list[str], ready: Callable[[], bool] | None
    ) -> None:
        """Start one component, logging to a file, record it, and await ready (unless None)."""
        with step(f"starting {name}"):
            with open(self.log_dir / f"{name}.log", "wb") as log:
                self._procs[name] = subprocess.Popen(
                    [str(exe), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own group: stop() can end it whole
                )
            self._exes[name] = str(exe)
            self.recorded()  # at once, so `down` finds even a half-started tier
            if ready is not None:
                self.wait(name, ready)

    def wait(self, name: str, ready: Callable[[], bool]) -> None:
        """Poll until ready() holds; fail with the log tail if it times out or anything dies."""
        deadline = time.monotonic() + self.timeout
        while not ready():
            for other, proc in self._procs.items():
                if proc.poll() is not None:
                    raise ClusterError(
                        f"{other} exited with code {proc.returncode}"
                        + log_tail(self.log_dir / f"{other}.log")
                    )
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{name} not ready after {self.timeout:g}s"
                    + log_tail(self.log_dir / f"{name}.log")
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop every component, newest first: SIGTERM its group, SIGKILL it if it lingers."""
        for proc in reversed(self._procs.values()):
            stop_group(proc.pid, functools.partial(_exited, proc))
        self.forget()

    def forget(self) -> None:
        """Let go of the components (reaping those that exited): they were stopped some other
        way, or are left running past this process's exit for `down` to end."""
        for proc in self._procs.values():
            proc.poll()
        self._procs.clear()
        self._exes.clear()


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None  # poll() also reaps it


class Owner(Protocol):
    """What this process started and must stop before it ends: a tier."""

    def stop(self) -> None: ...


# Started by this process and neither stopped nor detached, oldest first (a dict keeps order).
_OWNED: dict[Owner, None] = {}


def own(owner: Owner) -> None:
    """Register owner to be stopped at exit or on SIGTERM, whichever comes first."""
    _OWNED[owner] = None
    _stop_all_on_sigterm()


def disown(owner: Owner) -> None:
    """Take owner off the registry: it stopped, or is left running on purpose (`up`)."""
    _OWNED.pop(owner, None)


@atexit.register
def stop_all() -> None:
    """Stop every registered owner, oldest first: an owner registers before what it starts
    (a node before its control plane) and stops that itself, in the order it needs."""
    for owner in list(_OWNED):
        owner.stop()


def _stop_all_on_sigterm() -> None:
    """Stop the owners on SIGTERM too, which skips atexit.

    Only where SIGTERM has its default action: a program with its own handler keeps it.
    """
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        with contextlib.suppress(ValueError):  # only the main thread may set handlers
            signal.signal(signal.SIGTERM, _stop_all_and_die)


def _stop_all_and_die(signum: int, _frame: FrameType | None) -> None:
    stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # die of the signal, as without this handler


class LocalTier(Cluster, abc.ABC):
    """A cluster this process runs, registered from start() until stop() or detach(): exit,
    SIGTERM and the end of a `with` block stop it, whatever happens in between."""

    def start(self) -> None:
        """Start every component and wait until the cluster works; on any failure stop what
        started, so a failed start leaves nothing running."""
        self._check_can_start()
        own(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every component and clean up after it; idempotent."""
        disown(self)
        self._stop()

    def detach(self) -> None:
        """Leave the components running past this process's exit (for `up`); `down` ends them."""
        disown(self)
        self._detach()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @abc.abstractmethod
    def _check_can_start(self) -> None:
        """Raise ClusterError, before anything starts, when the tier cannot start here."""

    @abc.abstractmethod
    def _start(self) -> None: ...

    @abc.abstractmethod
    def _stop(self) -> None: ...

    @abc.abstractmethod
    def _detach(self) -> None: ...
