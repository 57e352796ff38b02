"""How fast can ONNX Runtime itself do one row of the heavy model? The floor under any server.

The serving benchmark's c=1 p50 target is a ratio to the best peer. On a CPU where one row of
the heavy MLP is slow, even ONNX Runtime alone, in process, cannot reach it. This prints that
floor and the levers tried against it, side by side, all pinned to one core with one thread:

    taskset -c 1 .venv/bin/python benchmarks/heavy_row.py
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 taskset -c 1 .venv/bin/python benchmarks/heavy_row.py

- default session, back to back; then after a pause of 0.1 ms and 0.5 ms (sleeping), which is
  what a server sees between requests at concurrency 1 (a core that idles can lose its caches);
- `session.disable_prepacking`: ONNX Runtime's other GEMM path;
- for each, whether 32 single rows are bit-identical to one 32-row batch (what dynamic
  batching relies on), and the weight bandwidth the row time implies;
- the process's transparent huge pages (set by the glibc tunable in the second command).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serving import MODELS, make_mlp


def session(model: Path, **config: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def p50_ms(run: ort.InferenceSession, row: np.ndarray, calls: int, pause_s: float) -> float:
    times = []
    for _ in range(calls):
        if pause_s:
            time.sleep(pause_s)
        start = time.perf_counter()
        run.run(None, {"input": row})
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def huge_pages_kb() -> str:
    for line in Path(f"/proc/{os.getpid()}/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return line.split(":", 1)[1].strip()
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    dims = MODELS["heavy"]
    weight_bytes = sum(a * b * 4 for a, b in itertools.pairwise(dims))
    rows = np.random.default_rng(1).random((32, dims[0]), dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        model = make_mlp(Path(folder) / "heavy.onnx", dims)
        variants = {
            "default": session(model),
            "disable_prepacking": session(model, **{"session.disable_prepacking": "1"}),
        }
        print(f"heavy MLP {'→'.join(map(str, dims))}: {weight_bytes / 2**20:.1f} MiB of weights,"
              f" one row per call, {args.calls} calls per figure, p50")  # fmt: skip
        print(f"{'session':<20} {'back to back':>13} {'0.1 ms pause':>13} {'0.5 ms pause':>13}"
              f" {'GB/s':>6}  batched rows identical")  # fmt: skip
        for name, run in variants.items():
            for _ in range(200):
                run.run(None, {"input": rows[:1]})
            figures = [p50_ms(run, rows[:1], args.calls, pause) for pause in (0, 1e-4, 5e-4)]
            singles = np.concatenate([run.run(None, {"input": rows[i : i + 1]})[0]
                                      for i in range(len(rows))])  # fmt: skip
            identical = np.array_equal(singles, run.run(None, {"input": rows})[0])
            print(f"{name:<20} {figures[0]:10.3f} ms {figures[1]:10.3f} ms {figures[2]:10.3f} ms"
                  f" {weight_bytes / figures[0] / 1e6:6.1f}  {identical}")  # fmt: skip
    print(f"transparent huge pages in this process: {huge_pages_kb()}")


if __name__ == "__main__":
    main()
