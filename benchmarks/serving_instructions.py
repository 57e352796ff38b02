"""Instructions per request: modelserve's CPU cost counted, not timed, beside a baseline commit.

    .venv/bin/python benchmarks/serving_instructions.py --baseline ec219d4
    .venv/bin/python benchmarks/serving_instructions.py --baseline ec219d4 --concurrency 1,32

Why a second serving benchmark: req/s and CPU µs per request (benchmarks/serving.py) move by
±3-10 % between runs on a shared two-core machine, which hides the small per-request costs a
change adds. Valgrind's callgrind counts the instructions the server process executes, which is
the same from run to run whatever else the machine does (seen here: 245.1k and 245.6k for the
same commit, with a cluster test running beside it). Each version runs under callgrind with
instrumentation off while it loads; it is switched on (`callgrind_control -i on`) only for N
requests sent by plain Python clients over keep-alive connections, then dumped. The figure is
the dump's total over N: the server's own work per request, startup excluded.

Caveats, said here so the figures are read right: callgrind slows the server ~50x, so at c>1 the
batcher sees more requests waiting than at full speed and batches differently (compare versions
at the same c only, never with serving.py's figures); instructions are not cycles (a cache miss
costs nothing here). It is a tool for finding and proving a per-request regression, after which
serving.py says what it costs in req/s. `callgrind_annotate --tree=caller FILE` on the kept
output (--keep) shows where the instructions went.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import serving  # noqa: E402

SERVING_SRC = HERE.parent / "serving_image"
READY_TIMEOUT = 900.0  # loading ONNX Runtime under callgrind takes a minute or two


def _get(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def _post_many(port: int, body: bytes, count: int, failures: list[str]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"content-type": "application/json"}
    for _ in range(count):
        connection.request("POST", "/v2/models/small/infer", body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            failures.append(f"HTTP {response.status}")
    connection.close()


def count(
    source: Path, model: Path, *, requests: int, concurrency: int, port: int, out: Path
) -> float:
    """Instructions per request of the modelserve package under `source` (a serving_image)."""
    config = (source / "modelserve" / "config.py").read_text()
    command = serving.modelserve_command(
        Path(sys.executable), batching_flag='"--batching"' in config
    )(model, "small", port, out.parent)
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={out}"]  # fmt: skip
    env = {**os.environ, **serving.THREAD_ENV, "PYTHONPATH": str(source)}
    log = out.with_suffix(".log").open("w")
    process = subprocess.Popen([*valgrind, *command], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                if _get(port, "/v2/models/small/ready") == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not get ready; see {log.name}")
            time.sleep(2)
        body = serving.request_body(serving.MODELS["small"][0])
        failures: list[str] = []
        _post_many(port, body, 50, failures)  # warm: first-call paths are not per-request cost
        each = requests // concurrency
        control = ["callgrind_control", "--instr=on", str(process.pid)]
        subprocess.run(control, check=True, capture_output=True)
        clients = [threading.Thread(target=_post_many, args=(port, body, each, failures))
                   for _ in range(concurrency)]  # fmt: skip
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        control[1] = "--instr=off"
        subprocess.run(control, check=True, capture_output=True)
        subprocess.run(["callgrind_control", "--dump", str(process.pid)], check=True,
                       capture_output=True)  # fmt: skip
        if failures:
            raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    finally:
        process.terminate()
        process.wait(120)
        log.close()
    total = 0
    for dump in out.parent.glob(out.name + "*"):
        found = re.search(r"^totals: (\d+)", dump.read_text(errors="replace"), re.MULTILINE)
        total += int(found.group(1)) if found else 0
    return total / (each * concurrency)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline",
        metavar="REF",
        action="append",
        default=[],
        help="also count modelserve as it was at this git commit (repeatable)",
    )
    parser.add_argument("--concurrency", default="32")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--keep", type=Path, help="keep the callgrind outputs in this folder")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install -y valgrind", file=sys.stderr)
            return 2
    cache = serving.DEFAULT_VENVS.parent / "baselines"
    versions = [("modelserve", SERVING_SRC)]
    for ref in args.baseline:
        server = serving.baseline_server(ref, cache)  # extracts the commit's serving_image
        versions.append((server.name, Path(server.env["PYTHONPATH"])))
    with tempfile.TemporaryDirectory(prefix="modelserve-instructions-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = serving.make_mlp(work / "small.onnx", serving.MODELS["small"])
        print(f"model small {serving.MODELS['small']}, {args.requests} requests per point, "
              "counted by callgrind (deterministic; not comparable across c)")  # fmt: skip
        results: dict[tuple[str, int], float] = {}
        for index, (name, source) in enumerate(versions):
            for c in (int(c) for c in args.concurrency.split(",")):
                print(f"- {name} c={c} (a minute or two)...", file=sys.stderr, flush=True)
                tag = re.sub(r"[^\w.-]", "_", f"{name}-c{c}")
                out = work / f"{tag}.callgrind"
                results[name, c] = count(source, model, requests=args.requests, concurrency=c,
                                         port=18700 + index, out=out)  # fmt: skip
    mine = versions[0][0]
    for (name, c), per in results.items():
        versus = "" if name == mine else f"   {mine} = {results[mine, c] / per:.3f}x this"
        print(f"{name:20} c={c:<3} {per / 1000:9.1f}k instructions/request{versus}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
