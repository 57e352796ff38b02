"""Serving benchmark: modelserve side by side with raw ONNX Runtime and peer servers.

One command starts each server on the same generated models and prints a table of req/s,
rows/s, p50 and p99 at each concurrency:

    .venv/bin/python benchmarks/serving.py                       # everything available
    .venv/bin/python benchmarks/serving.py --servers modelserve,fastapi --duration 5

Models: `small` (MLP 64→256→256→10) and `heavy` (MLP 64→1024→2048→1024→10), generated with
`onnx.helper` from a fixed seed. Method, so figures are fair and repeatable on two cores: each
server runs pinned to one core (`taskset -c SERVER_CPU`, one ONNX Runtime intra-op thread), the
load generator on the other (`wrk -t1`, a Lua script POSTing the same OIP v2 JSON body with one
row), a warm-up (default 3 s) then one measurement (default 10 s) per point; loopback only.
Server CPU per request is read from /proc/PID/task/*/schedstat over the whole process tree:
it is less sensitive to a busy machine than req/s, which is why it is printed too.

Rows: `onnxruntime` is ONNX Runtime in process with no HTTP at all (the ceiling: c=1 is one row
per call, c=32 is 32-row batches); `modelserve`; `fastapi` (FastAPI + uvicorn + ONNX Runtime,
the tutorial approach, benchmarks/peers/fastapi_server.py); and the peers that installed:
`kserve` (KServe's Python model server, custom ONNX Runtime model, logging off), `mlserver`
(custom model, parallel_workers=0, adaptive batching on) and `pytriton` (Triton's server with a
Python callable and its dynamic batcher). Peers live in their own virtualenvs under
--venvs (default ~/.cache/modelserve-bench/venvs/{kserve,mlserver,pytriton}); create them with
`--setup` (PyPI access needed once). A peer whose venv is missing is skipped with a note.

`--baseline REF` adds a row `modelserve@REF`: the serving package as it was at that git commit
(extracted with `git archive`, run with this venv's packages), measured in the same run, so a
regression is read against the same machine and the same load instead of an older table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Servers start, answer ready and stop the way the serving tests' do: one module, serverproc.
sys.path.insert(0, str(HERE.parent / "tests" / "serving"))
import serverproc  # noqa: E402

PEERS = HERE / "peers"
DEFAULT_VENVS = Path.home() / ".cache" / "modelserve-bench" / "venvs"
MODELS = {"small": (64, 256, 256, 10), "heavy": (64, 1024, 2048, 1024, 10)}
PEER_PACKAGES = {
    "kserve": ["kserve", "onnxruntime"],
    "mlserver": ["mlserver", "onnxruntime"],
    "pytriton": ["nvidia-pytriton", "numpy<2", "onnxruntime"],
}
ALL_SERVERS = ("modelserve", "fastapi", "kserve", "mlserver", "pytriton")
NAME_WIDTH = 20  # a server's name in the table: `modelserve@<ref>` fits
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# --- models ----------------------------------------------------------------------------------


def make_mlp(path: Path, dims: tuple[int, ...], seed: int = 0) -> Path:
    """A ReLU MLP with input `input` [batch, dims[0]] and output `output` [batch, dims[-1]]."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "input"
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        weight = (rng.standard_normal((a, b)) / math.sqrt(a)).astype(np.float32)
        inits += [
            numpy_helper.from_array(weight, f"w{i}"),
            numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}"),
        ]
        last = i == len(dims) - 2
        gemm_out = "output" if last else f"g{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [gemm_out]))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"h{i}"]))
            prev = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", dims[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", dims[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def request_body(features: int, seed: int = 1) -> bytes:
    """The one OIP v2 JSON request every server receives: one row of `features` floats."""
    import numpy as np

    row = np.random.default_rng(seed).random(features).round(5).tolist()
    payload = {"inputs": [{"name": "input", "shape": [1, features], "datatype": "FP32",
                           "data": row}]}  # fmt: skip
    return json.dumps(payload, separators=(",", ":")).encode()


# --- load generation -------------------------------------------------------------------------


@dataclass
class Point:
    """One measurement: throughput, latency and the server's CPU per request."""

    rps: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    cpu_us: float | None = None
    note: str = ""


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(text)
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def median_point(points: list[Point]) -> Point:
    """The run with the median req/s (with its own latencies): one noisy run does not decide."""
    return sorted(points, key=lambda p: p.rps)[len(points) // 2]


def wrk(url: str, lua: Path, *, connections: int, seconds: float, cpu: int) -> dict[str, Any]:
    """Run wrk pinned to `cpu`; returns requests, req/s, p50/p99 (ms) and error count."""
    command = [
        "taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--latency", "--timeout", "10s", "-s", str(lua), url,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _duration_ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _duration_ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: .*?(\d+) timeout"):
        found = re.search(pattern, out)
        if found:
            errors += int(found.group(1))
    connect = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", out)
    if connect:
        errors += sum(int(g) for g in connect.groups())
    return {"requests": requests, "rps": rps, "p50": p50, "p99": p99, "errors": errors}


def lua_script(body: bytes, folder: Path) -> Path:
    script = folder / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body.decode()}]==]\n"
    )
    return script


def tree_cpu_ns(pid: int) -> int:
    """CPU time (ns, exact, from schedstat) of a process and all its descendants' threads."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        for task in Path(f"/proc/{current}/task").glob("*/schedstat"):
            try:
                total += int(task.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total


# --- servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    """How to start one server on one model, and where it answers."""

    name: str
    command: Callable[[Path, str, int, Path], list[str]]
    python: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/v2/models/{name}/ready"  # the model's, not the server's: Triton differs
    startup_timeout: float = 120.0


def _venv_python(venvs: Path, peer: str) -> Path:
    return venvs / peer / "bin" / "python"


def modelserve_command(python: Path, batching_flag: bool = True) -> Callable[..., list[str]]:
    """modelserve's command line. batching_flag False: a baseline from before `--batching`
    existed, when batching was on by default for a dynamic first dimension (as here)."""

    def command(model: Path, name: str, port: int, _: Path) -> list[str]:
        return [
            str(python), "-m", "modelserve", "--model", str(model), "--name", name,
            "--host", "127.0.0.1", "--port", str(port), "--access-log", "false",
            "--intra-op-threads", "1", "--inter-op-threads", "1",
            # Batching turned on explicitly, as it is for the peers (mlserver, pytriton): at
            # c=32 the table compares batching servers, whatever modelserve's default is.
            *(["--batching", "true"] if batching_flag else []), "--max-batch-size", "32",
        ]  # fmt: skip

    return command


def baseline_server(ref: str, cache: Path) -> Server:
    """modelserve as it was at git commit `ref`, extracted once under `cache`."""
    sha = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", ref],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    target = cache / sha
    if not (target / "serving_image" / "modelserve").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", sha, "serving_image"],
                                 capture_output=True, check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    config = (target / "serving_image" / "modelserve" / "config.py").read_text()
    return Server(
        f"modelserve@{ref}",
        modelserve_command(Path(sys.executable), batching_flag='"--batching"' in config),
        Path(sys.executable),
        env={"PYTHONPATH": str(target / "serving_image")},
    )


def servers(venvs: Path) -> dict[str, Server]:
    """Every server the benchmark knows; peers point at their own virtualenvs."""
    me = Path(sys.executable)
    modelserve = modelserve_command(me)

    def fastapi(model: Path, name: str, port: int, _: Path) -> list[str]:
        return [str(me), str(PEERS / "fastapi_server.py"), "--model", str(model),
                "--name", name, "--port", str(port)]  # fmt: skip

    def kserve(model: Path, name: str, port: int, _: Path) -> list[str]:
        return [str(_venv_python(venvs, "kserve")), str(PEERS / "kserve_server.py"),
                "--model", str(model), "--name", name, "--port", str(port)]  # fmt: skip

    def mlserver(model: Path, name: str, port: int, work: Path) -> list[str]:
        folder = work / f"mlserver-{name}"
        folder.mkdir(exist_ok=True)
        (folder / "settings.json").write_text(json.dumps({
            "http_port": port, "grpc_port": serverproc.free_port(),
            "metrics_port": serverproc.free_port(),
            "host": "127.0.0.1", "parallel_workers": 0, "debug": False, "metrics_endpoint": None,
        }))  # fmt: skip
        (folder / "model-settings.json").write_text(json.dumps({
            "name": name, "implementation": "mlserver_model.OnnxModel",
            "max_batch_size": 32, "max_batch_time": 0.002,
            "parameters": {"uri": str(model)},
        }))  # fmt: skip
        shutil.copy(PEERS / "mlserver_model.py", folder / "mlserver_model.py")
        return [str(venvs / "mlserver" / "bin" / "mlserver"), "start", str(folder)]

    def pytriton(model: Path, name: str, port: int, _: Path) -> list[str]:
        return [str(_venv_python(venvs, "pytriton")), str(PEERS / "pytriton_server.py"),
                "--model", str(model), "--name", name, "--port", str(port)]  # fmt: skip

    libdir = subprocess.run(
        [str(_venv_python(venvs, "pytriton")), "-c",
         "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
        capture_output=True, text=True, check=False,
    ).stdout.strip() if _venv_python(venvs, "pytriton").exists() else ""  # fmt: skip
    return {
        "modelserve": Server("modelserve", modelserve, me),
        "fastapi": Server("fastapi", fastapi, me),
        "kserve": Server("kserve", kserve, _venv_python(venvs, "kserve")),
        "mlserver": Server("mlserver", mlserver, _venv_python(venvs, "mlserver")),
        "pytriton": Server(
            "pytriton",
            pytriton,
            _venv_python(venvs, "pytriton"),
            env={"LD_LIBRARY_PATH": libdir + ":" + os.environ.get("LD_LIBRARY_PATH", "")},
        ),
    }


def available(server: Server) -> str | None:
    """None when the server can run here, else why not."""
    if server.python is None or server.python.exists():
        if server.name == "fastapi":
            try:
                import fastapi  # noqa: F401
                import uvicorn  # noqa: F401
            except ImportError:
                return "fastapi/uvicorn not installed (pip install -e '.[serving-bench]')"
        return None
    return f"no virtualenv at {server.python.parent.parent} (run with --setup)"


def bench_server(
    server: Server,
    model: Path,
    name: str,
    body: bytes,
    args: argparse.Namespace,
    work: Path,
) -> dict[int, Point]:
    """Start the server pinned to the server core, run every concurrency, stop it."""
    port = serverproc.free_port()
    log = work / f"{server.name}-{name}.log"
    env = {**os.environ, **THREAD_ENV, **server.env, "PYTHONUNBUFFERED": "1"}
    command = ["taskset", "-c", str(args.server_cpu), *server.command(model, name, port, work)]
    # A group of its own: stop() also ends the workers some peers fork.
    process = serverproc.spawn(command, log, env=env, cwd=work, own_group=True)
    results: dict[int, Point] = {}
    try:
        ready = f"http://127.0.0.1:{port}{server.ready_path.format(name=name)}"
        serverproc.wait_ready(ready, process, server.startup_timeout, interval=0.2)
        url = f"http://127.0.0.1:{port}/v2/models/{name}/infer"
        check = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(check, timeout=10) as response:
            answer = json.loads(response.read())
        if not answer.get("outputs"):
            raise RuntimeError(f"unexpected answer: {answer}")
        lua = lua_script(body, work)
        for connections in args.concurrency:
            if args.warmup:
                wrk(url, lua, connections=connections, seconds=args.warmup, cpu=args.load_cpu)
            points = []
            for _ in range(args.repeat):
                before = tree_cpu_ns(process.pid)
                out = wrk(url, lua, connections=connections, seconds=args.duration,
                          cpu=args.load_cpu)  # fmt: skip
                cpu = (tree_cpu_ns(process.pid) - before) / 1000 / max(out["requests"], 1)
                points.append(Point(
                    rps=out["rps"], rows_per_s=out["rps"], p50_ms=out["p50"], p99_ms=out["p99"],
                    errors=out["errors"], cpu_us=cpu,
                ))  # fmt: skip
            results[connections] = median_point(points)
    except Exception as exc:
        tail = log.read_text(errors="replace")[-1500:]
        print(f"  {server.name}/{name}: failed: {exc}\n{tail}", file=sys.stderr)
    finally:
        serverproc.stop(process, timeout=15, group=True)
    return results


# --- raw ONNX Runtime (no HTTP) --------------------------------------------------------------


def raw_child(model: str, batch: int, seconds: float, warmup: float) -> None:
    """Child process: time session.run in a loop; prints one JSON line."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((batch, 64)).astype(np.float32)
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        session.run(None, {"input": x})
    times = []
    start = time.perf_counter()
    end = start + seconds
    while (now := time.perf_counter()) < end:
        session.run(None, {"input": x})
        times.append(time.perf_counter() - now)
    elapsed = time.perf_counter() - start
    times.sort()
    print(json.dumps({
        "calls": len(times), "elapsed": elapsed,
        "p50": times[len(times) // 2] * 1e3, "p99": times[int(len(times) * 0.99)] * 1e3,
    }))  # fmt: skip


def bench_raw(model: Path, args: argparse.Namespace) -> dict[int, Point]:
    results = {}
    for connections in args.concurrency:
        command = [
            "taskset", "-c", str(args.server_cpu), sys.executable, __file__, "--raw-child",
            str(model), str(connections), str(args.duration), str(args.warmup),
        ]  # fmt: skip
        out = json.loads(subprocess.run(command, capture_output=True, text=True, check=True,
                                        env={**os.environ, **THREAD_ENV}).stdout)  # fmt: skip
        calls_per_s = out["calls"] / out["elapsed"]
        results[connections] = Point(
            rps=calls_per_s * connections, rows_per_s=calls_per_s * connections,
            p50_ms=out["p50"], p99_ms=out["p99"], note="in process, batch of c rows per call",
        )  # fmt: skip
    return results


# --- report ----------------------------------------------------------------------------------


def table(results: dict[str, dict[str, dict[int, Point]]], concurrency: list[int]) -> str:
    lines = []
    for model, by_server in results.items():
        lines.append(
            f"\nmodel {model} ({'→'.join(str(d) for d in MODELS[model])}), one row per request"
        )
        header = f"{'server':<{NAME_WIDTH}}"
        for c in concurrency:
            header += (
                f" | c={c:<3} {'req/s':>8} {'rows/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'cpu µs':>7}"
            )
        lines.append(header)
        lines.append("-" * len(header))
        for server, points in by_server.items():
            row = f"{server:<{NAME_WIDTH}}"
            for c in concurrency:
                p = points.get(c)
                if p is None:
                    row += f" | {'(failed)':>47}"
                    continue
                cpu = f"{p.cpu_us:7.0f}" if p.cpu_us is not None else f"{'-':>7}"
                flag = "!" if p.errors else " "
                row += (f" | {flag:<5} {p.rps:8.0f} {p.rows_per_s:8.0f} {p.p50_ms:7.2f} "
                        f"{p.p99_ms:7.2f} {cpu}")  # fmt: skip
            lines.append(row)
        lines.append(ratios(by_server, concurrency))
    return "\n".join(lines)


def ratios(by_server: dict[str, dict[int, Point]], concurrency: list[int]) -> str:
    """modelserve against the best peer (not raw ORT) on the issue's targets: throughput and
    p99 at the highest concurrency, p50 at the lowest, with the ratio in-process ONNX Runtime
    itself reaches at the lowest (on a memory-bound model it can be above the target)."""
    mine = by_server.get("modelserve", {})
    peers = {k: v for k, v in by_server.items()
             if not k.startswith("modelserve") and k != "onnxruntime"}  # fmt: skip
    high, low = max(concurrency), min(concurrency)
    at_high = [(v[high], k) for k, v in peers.items() if high in v]
    at_low = [(v[low], k) for k, v in peers.items() if low in v]
    parts = []
    if high in mine and at_high and high > 1:
        best, name = max(at_high, key=lambda item: item[0].rps)
        parts.append(f"c={high} req/s {mine[high].rps / best.rps:.2f}x best peer ({name}; "
                     "target >= 2x)")  # fmt: skip
        best, name = min(at_high, key=lambda item: item[0].p99_ms)
        parts.append(f"c={high} p99 {mine[high].p99_ms / best.p99_ms:.2f}x the best peer's "
                     f"({name}; target <= 1x)")  # fmt: skip
    if low in mine and at_low:
        best, name = min(at_low, key=lambda item: item[0].p50_ms)
        # The floor no server can go below: ONNX Runtime's own time for the call, no HTTP.
        ceiling = by_server.get("onnxruntime", {}).get(low)
        floor = f"; ONNX Runtime alone {ceiling.p50_ms / best.p50_ms:.2f}x" if ceiling else ""
        parts.append(f"c={low} p50 {mine[low].p50_ms / best.p50_ms:.2f}x best peer ({name}; "
                     f"target <= 0.5x{floor})")  # fmt: skip
    return "  modelserve: " + "; ".join(parts) if parts else "  (no peer to compare with)"


def setup(venvs: Path, names: list[str]) -> None:
    """Create one virtualenv per peer and pip install it (needs PyPI once)."""
    for name in names:
        if name not in PEER_PACKAGES:
            continue
        target = venvs / name
        if not (target / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
        subprocess.run([str(target / "bin" / "pip"), "install", "-q", *PEER_PACKAGES[name]],
                       check=True)  # fmt: skip


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--raw-child":
        raw_child(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--servers", default="onnxruntime,modelserve,fastapi,kserve,mlserver,pytriton"
    )
    parser.add_argument("--models", default="small,heavy")
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each point")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per point")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per point; the median (by req/s) is kept"
    )
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--load-cpu", type=int, default=0)
    parser.add_argument("--venvs", type=Path, default=DEFAULT_VENVS)
    parser.add_argument("--setup", action="store_true", help="install the peers' venvs first")
    parser.add_argument(
        "--baseline", metavar="REF", action="append", default=[],
        help="also run modelserve as it was at this git commit (repeatable)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    names = [s for s in args.servers.split(",") if s]
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    if args.setup:
        setup(args.venvs, names)
    known = servers(args.venvs)
    for ref in args.baseline:
        baseline = baseline_server(ref, args.venvs.parent / "baselines")
        known[baseline.name] = baseline
        names.insert(names.index("modelserve") + 1 if "modelserve" in names else 0, baseline.name)
    print(f"load average at start: {load_average()} (figures are noisy when it is above ~0.3)")
    results: dict[str, dict[str, dict[int, Point]]] = {}
    with tempfile.TemporaryDirectory(prefix="modelserve-bench-") as tmp:
        work = Path(tmp)
        for model_name in args.models.split(","):
            model = make_mlp(work / f"{model_name}.onnx", MODELS[model_name])
            body = request_body(MODELS[model_name][0])
            results[model_name] = {}
            for name in names:
                if name == "onnxruntime":
                    print(f"- {model_name}: onnxruntime in process", file=sys.stderr)
                    results[model_name][name] = bench_raw(model, args)
                    continue
                server = known.get(name)
                if server is None:
                    print(f"unknown server {name}", file=sys.stderr)
                    continue
                why = available(server)
                if why:
                    print(f"- {model_name}: skipping {name}: {why}", file=sys.stderr)
                    continue
                print(f"- {model_name}: {name}", file=sys.stderr)
                results[model_name][name] = bench_server(server, model, model_name, body,
                                                         args, work)  # fmt: skip
    print(table(results, args.concurrency))
    print(f"\nload average at end: {load_average()}; '!' marks a point with errors")
    if args.json:
        args.json.write_text(json.dumps(
            {m: {s: {c: vars(p) for c, p in pts.items()} for s, pts in by.items()}
             for m, by in results.items()}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
