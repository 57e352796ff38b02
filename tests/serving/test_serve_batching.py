"""Dynamic batching: concurrent requests are merged, and each gets exactly its own rows."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import servekit

from modelserve.batching import Batcher
from modelserve.metrics import Metrics
from modelserve.model import Model, SessionOptions


def histogram(metrics: str, name: str) -> tuple[float, float]:
    """(sum, count) of a histogram in a Prometheus text exposition."""
    total = re.search(rf"^{name}_sum\{{[^}}]*\}} (\S+)$", metrics, re.M)
    count = re.search(rf"^{name}_count\{{[^}}]*\}} (\S+)$", metrics, re.M)
    assert total, metrics
    assert count, metrics
    return float(total.group(1)), float(count.group(1))


def test_batched_results_equal_unbatched(model_dir: Path, log_dir: Path) -> None:
    model = model_dir / "mlp.onnx"
    session = ort.InferenceSession(str(model))
    rng = np.random.default_rng(7)
    requests = [rng.standard_normal((1 + i % 3, 4)).astype(np.float32) for i in range(24)]
    # A 150 ms window and room for every row: the 24 requests land in a few batches.
    server = servekit.start(model, "--max-delay-ms", "150", "--max-batch-size", "64",
                            log_dir=log_dir)  # fmt: skip

    def call(rows: np.ndarray) -> np.ndarray:
        body = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                            "data": rows.reshape(-1).tolist()}]}  # fmt: skip
        response = httpx.post(f"{server.url}/v2/models/mlp/infer", json=body, timeout=10)
        assert response.status_code == 200, response.text
        (output,) = response.json()["outputs"]
        return np.array(output["data"], dtype=np.float32).reshape(output["shape"])

    try:
        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(pool.map(call, requests))
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        assert server.stop() == 0
    for rows, answer in zip(requests, answers, strict=True):
        (alone,) = session.run(None, {"input": rows})
        np.testing.assert_allclose(answer, alone, rtol=1e-5, atol=1e-6)
    rows_total, batches = histogram(metrics, "modelserve_batch_size")
    assert rows_total == sum(len(r) for r in requests)  # the warm-up bypasses the batcher
    assert batches < len(requests) / 2, f"{batches} batches for {len(requests)} requests"


@pytest.mark.parametrize("max_batch", [1, 4, 32])
def test_batcher_in_process_is_exact(model_dir: Path, max_batch: int) -> None:
    """The batcher alone, on an event loop: row slices map back to the right requests."""
    model = Model.load(model_dir / "mlp.onnx", name="mlp", version="1", sha256="-",
                       options=SessionOptions())  # fmt: skip
    metrics = Metrics(model="mlp", version="1")
    rng = np.random.default_rng(3)
    requests = [rng.standard_normal((1 + i % 4, 4)).astype(np.float32) for i in range(40)]

    async def main() -> list[dict[str, np.ndarray]]:
        batcher = Batcher(model, metrics, max_batch_size=max_batch)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in requests]
        for rows, future in zip(requests, futures, strict=True):
            batcher.submit({"input": rows}, len(rows), None, future.set_result)
        results = await asyncio.gather(*futures)
        await batcher.wait_idle()
        batcher.close()
        return results

    results = asyncio.run(main())
    for rows, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(result["output"], model.run({"input": rows})["output"],
                                   rtol=1e-5, atol=1e-6)  # fmt: skip
    sizes = histogram(metrics.exposition().decode(), "modelserve_batch_size")
    assert sizes[0] == sum(len(r) for r in requests)
    if max_batch == 1:
        assert sizes[1] == len(requests)
    else:
        assert sizes[1] < len(requests)
