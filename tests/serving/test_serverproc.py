"""serverproc, the start-up the serving tests and the serving benchmark share, on real processes:
Python's own http.server as the server, `sh` and `sleep` as servers that misbehave.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
import time
from pathlib import Path

import pytest
import serverproc

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "serving.py"


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie, whose cmdline is empty, does not)."""
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


def test_a_server_is_ready_once_it_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = serverproc.free_port()
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    process = serverproc.spawn(command, tmp_path / "server.log", cwd=tmp_path)
    serverproc.wait_ready(f"http://127.0.0.1:{port}/", process, timeout=30)
    assert serverproc.answers_ok(f"http://127.0.0.1:{port}/")
    assert not serverproc.answers_ok(f"http://127.0.0.1:{port}/no-such-file")  # 404
    assert serverproc.stop(process) == -signal.SIGTERM
    assert not serverproc.answers_ok(f"http://127.0.0.1:{port}/")


def test_a_server_that_exits_is_reported_with_its_code_and_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    process = serverproc.spawn(["sh", "-c", "echo bad flag >&2; exit 3"], log)
    with pytest.raises(serverproc.ExitedError, match="exited with 3") as failed:
        serverproc.wait_ready(f"http://127.0.0.1:{serverproc.free_port()}/", process, timeout=30)
    assert failed.value.returncode == 3
    assert log.read_text() == "bad flag\n"


def test_a_server_that_never_answers_is_not_ready_after_the_timeout(tmp_path: Path) -> None:
    process = serverproc.spawn(["sleep", "60"], tmp_path / "server.log")
    began = time.monotonic()
    with pytest.raises(serverproc.NotReadyError, match=r"not ready after 0\.5s") as failed:
        serverproc.wait_ready(f"http://127.0.0.1:{serverproc.free_port()}/", process, timeout=0.5)
    assert not isinstance(failed.value, serverproc.ExitedError)
    assert 0.5 <= time.monotonic() - began < 10
    assert serverproc.stop(process) == -signal.SIGTERM


def test_a_server_that_ignores_sigterm_is_killed_and_stop_says_so(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    stubborn += "print('ignoring', flush=True); time.sleep(60)"
    process = serverproc.spawn([sys.executable, "-c", stubborn], log)
    deadline = time.monotonic() + 30
    while "ignoring" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert serverproc.stop(process, timeout=0.5) is None
    assert process.returncode == -signal.SIGKILL


def test_stopping_a_group_also_ends_what_the_server_forked(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    forks = f"sleep 300 & echo $! > {pids}; wait"
    process = serverproc.spawn(["sh", "-c", forks], tmp_path / "server.log", own_group=True)
    deadline = time.monotonic() + 30
    while not pids.exists() or not pids.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker = int(pids.read_text())
    assert serverproc.stop(process, group=True) == -signal.SIGTERM
    deadline = time.monotonic() + 10
    while alive(worker):
        assert time.monotonic() < deadline, "the forked worker outlived the group's stop"
        time.sleep(0.05)


def test_the_benchmark_turns_modelserve_batching_on_explicitly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its peers batch by configuration; modelserve must too, whatever its default."""
    spec = importlib.util.spec_from_file_location("serving_benchmark", BENCHMARK)
    assert spec is not None
    assert spec.loader is not None
    benchmark = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, benchmark)  # its dataclasses look it up there
    spec.loader.exec_module(benchmark)
    modelserve = benchmark.servers(tmp_path)["modelserve"]
    command = modelserve.command(tmp_path / "small.onnx", "small", 8080, tmp_path)
    assert command[command.index("--batching") + 1] == "true"
    assert command[command.index("--max-batch-size") + 1] == "32"
