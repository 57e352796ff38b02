"""Dynamic batching: concurrent requests are merged, and each gets exactly its own rows."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import servekit

from modelserve.batching import Batcher
from modelserve.metrics import Metrics
from modelserve.model import Feeds, Model, SessionOptions


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
        np.testing.assert_array_equal(answer, alone)
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
        np.testing.assert_array_equal(result["output"], model.run({"input": rows})["output"])
    sizes = histogram(metrics.exposition().decode(), "modelserve_batch_size")
    assert sizes[0] == sum(len(r) for r in requests)
    if max_batch == 1:
        assert sizes[1] == len(requests)
    else:
        assert sizes[1] < len(requests)


def load(model_dir: Path, name: str) -> Model:
    return Model.load(model_dir / f"{name}.onnx", name=name, version="1", sha256="-",
                      options=SessionOptions())  # fmt: skip


def record_threads(model: Model, slow_call: int | None = None) -> list[str]:
    """Wrap the real `model.run` to note which thread makes each call; call number `slow_call`
    (from 1) is made 50 ms slower, as a model whose cost does not follow its input size."""
    threads: list[str] = []
    run = model.run

    def recording_run(feeds: Feeds, outputs: list[str] | None = None) -> Feeds:
        threads.append(threading.current_thread().name)
        if len(threads) == slow_call:
            time.sleep(0.05)  # well over INLINE_GIVE_UP_SECONDS
        return run(feeds, outputs)

    model.run = recording_run  # type: ignore[method-assign]
    return threads


async def one_at_a_time(batcher: Batcher, requests: list[tuple[Feeds, int]]) -> list[Feeds]:
    """Submit each request only after the previous one is answered: each finds the model idle."""
    loop = asyncio.get_running_loop()
    answers = []
    for feeds, rows in requests:
        future: asyncio.Future[Feeds] = loop.create_future()
        batcher.submit(feeds, rows, None, future.set_result)
        answers.append(await future)
    return answers


def serve_one_at_a_time(model: Model, requests: list[tuple[Feeds, int]]) -> list[Feeds]:
    async def main() -> list[Feeds]:
        batcher = Batcher(model, Metrics(model=model.name, version="1"), max_batch_size=32)
        answers = await one_at_a_time(batcher, requests)
        await batcher.wait_idle()
        batcher.close()
        return answers

    return asyncio.run(main())


MAIN = threading.main_thread().name


def test_only_a_lone_fast_request_runs_on_the_event_loop(model_dir: Path) -> None:
    """The inline shortcut must never hold the loop for long: a request is run on the loop
    thread only when nothing else is queued and its expected time is under the bound."""
    model = load(model_dir, "mlp")
    rng = np.random.default_rng(5)
    one = rng.standard_normal((1, 4)).astype(np.float32)
    # Rows enough that the estimate for them exceeds the bound on any machine.
    many = rng.standard_normal((200_000, 4)).astype(np.float32)
    expected_one = model.run({"input": one})["output"]
    expected_many = model.run({"input": many})["output"]
    threads = record_threads(model)

    async def main() -> list[Feeds]:
        batcher = Batcher(model, Metrics(model="mlp", version="1"), max_batch_size=32)
        answers = await one_at_a_time(
            batcher, [({"input": rows}, len(rows)) for rows in (one, one, many, one)]
        )
        # Two at once: the second is queued behind the first, so neither runs inline.
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Feeds]] = [loop.create_future() for _ in range(2)]
        for future in futures:
            batcher.submit({"input": one}, 1, None, future.set_result)
        answers += await asyncio.gather(*futures)
        await batcher.wait_idle()
        batcher.close()
        return answers

    answers = asyncio.run(main())
    # Unknown speed: a worker; then known fast: the loop; many rows: a worker; one row: the
    # loop again; two queued together: one batch on a worker.
    assert threads == ["infer-0", MAIN, "infer-0", MAIN, "infer-0"]
    for answer in answers[:2] + answers[3:]:
        np.testing.assert_array_equal(answer["output"], expected_one)
    np.testing.assert_array_equal(answers[2]["output"], expected_many)


def test_a_lone_request_larger_than_any_timed_one_runs_on_a_worker(model_dir: Path) -> None:
    """One row, but a long dynamic non-batch dimension: the estimate goes by input values and
    by what has been timed, so it never runs on the loop just because it is one row."""
    model = load(model_dir, "ragged")
    threads = record_threads(model)
    short = np.ones((1, 3), np.float32)
    long = np.ones((1, 3000), np.float32)
    sequence = (short, short, long, long, short)
    answers = serve_one_at_a_time(model, [({"x": rows, "z": rows}, 1) for rows in sequence])
    for rows, answer in zip(sequence, answers, strict=True):
        np.testing.assert_array_equal(answer["y"], rows + rows)
    # Unknown speed: a worker; then the loop; the first long one is larger than anything
    # timed: a worker (whether the second goes inline depends on this machine's timings).
    assert threads[:3] == ["infer-0", MAIN, "infer-0"]
    assert threads[4] == MAIN


def test_inlining_stops_for_good_after_one_slow_inline_run(model_dir: Path) -> None:
    """A model whose cost does not follow its input size (here one call made slow on purpose)
    holds the loop once, and never again: from then on every inference runs on a worker."""
    model = load(model_dir, "mlp")
    threads = record_threads(model, slow_call=3)
    serve_one_at_a_time(model, [({"input": np.ones((1, 4), np.float32)}, 1)] * 5)
    assert threads == ["infer-0", MAIN, MAIN, "infer-0", "infer-0"]


def test_models_with_integer_inputs_never_run_inline(model_dir: Path) -> None:
    """Integers may be sizes or trip counts, whose cost no input size predicts."""
    model = load(model_dir, "multi")
    threads = record_threads(model)
    feeds = {"a": np.array([[1, 2, 3]], np.int64), "flag": np.array([[True]]),
             "x": np.array([[1.0, 2.0]]), "h": np.array([[1.0, 2.0]], np.float16)}  # fmt: skip
    answers = serve_one_at_a_time(model, [(feeds, 1)] * 4)
    assert [answer["sum_a"].tolist() for answer in answers] == [[[6]]] * 4
    assert threads == ["infer-0"] * 4
