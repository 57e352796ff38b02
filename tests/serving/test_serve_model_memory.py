"""ONNX Runtime's memory is bounded: a small input whose dynamic sizes make the model allocate
gigabytes (attention is quadratic in the sequence) is refused, not left to the OOM killer."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import onnx_models
import servekit

from modelserve.config import memory_budget

LIMIT = 256 * 1024 * 1024


def peak_rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM")


def infer(server: servekit.Server, values: np.ndarray) -> httpx.Response:
    body = {"inputs": [{"name": "x", "shape": list(values.shape), "datatype": "FP32",
                        "data": values.reshape(-1).tolist()}]}  # fmt: skip
    return httpx.post(f"{server.url}/v2/models/outer_sum/infer", json=body, timeout=60)


def test_an_input_that_needs_more_memory_than_allowed_is_a_413(
    tmp_path: Path, log_dir: Path
) -> None:
    """n = 20000: 80 kB of input, 1.6 GB of outer product. Without a bound the server allocated
    it (at n = 100000, 40 GB: the pod is OOM-killed, every client's request lost with it).
    With --max-model-memory, ONNX Runtime's allocation fails at the bound, the request gets a
    413 naming it, the process stays small and serves the next request."""
    model = onnx_models.outer_sum(tmp_path / "outer_sum.onnx")
    server = servekit.start(model, "--max-model-memory", str(LIMIT), log_dir=log_dir)
    try:
        huge = infer(server, np.ones((1, 20000), np.float32))
        small = infer(server, np.arange(4, dtype=np.float32).reshape(1, 4))
        peak = peak_rss_mb(server.process.pid)
    finally:
        assert server.stop() == 0
    assert huge.status_code == 413, huge.text
    assert f"--max-model-memory {LIMIT} bytes" in huge.json()["error"]
    assert small.status_code == 200, small.text
    assert small.json()["outputs"][0]["data"] == [0.0, 6.0, 12.0, 18.0]
    assert peak < 600, f"peak RSS {peak} MB"


def test_the_default_bound_follows_the_container_memory_limit(tmp_path: Path) -> None:
    """Unset, the bound is three quarters of the cgroup's memory limit (v2 memory.max, v1
    memory.limit_in_bytes) less the model's weights, so a pod is bounded by default; no limit,
    no bound."""
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("1073741824\n")
    assert memory_budget(v2) == 805306368
    # The weights live outside the bounded arena: they come off the budget, down to 1/8.
    assert memory_budget(v2, model_bytes=300 << 20) == 805306368 - (300 << 20)
    assert memory_budget(v2, model_bytes=1 << 30) == 134217728
    (v2 / "memory.max").write_text("max\n")
    assert memory_budget(v2) == 0
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("536870912\n")
    assert memory_budget(v1) == 402653184
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert memory_budget(v1) == 0
    assert memory_budget(tmp_path / "absent") == 0
    assert memory_budget() >= 0  # the real one is read without error, whatever it holds
