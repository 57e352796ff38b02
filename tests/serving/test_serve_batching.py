"""Dynamic batching: concurrent requests are merged, and each gets exactly its own rows."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx_models
import onnxruntime as ort
import orjson
import pytest
import servekit

from modelserve.batching import Batcher
from modelserve.metrics import Metrics
from modelserve.model import Feeds, Model, SessionOptions
from modelserve.warmup import Samples, prepare


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
    server = servekit.start(model, "--batching", "true", "--max-delay-ms", "150",
                            "--max-batch-size", "64", log_dir=log_dir)  # fmt: skip

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
    model = load(model_dir, "mlp", batching=True)
    metrics = Metrics(model="mlp", version="1")
    rng = np.random.default_rng(3)
    requests = [rng.standard_normal((1 + i % 4, 4)).astype(np.float32) for i in range(40)]

    async def main() -> list[dict[str, np.ndarray]]:
        batcher = Batcher(model, metrics, max_batch_size=max_batch)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in requests]
        for rows, future in zip(requests, futures, strict=True):
            batcher.submit({"input": rows}, len(rows), None, future.set_result)
        results = await asyncio.gather(*futures)  # every job answered: the batcher is idle
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


def load(model_dir: Path, name: str, *, batching: bool = True) -> Model:
    """Load a model as the server does: warmed up, and checked for batching when asked."""
    model = Model.load(model_dir / f"{name}.onnx", name=name, version="1", sha256="-",
                       options=SessionOptions())  # fmt: skip
    prepare(model, batching=batching)
    return model


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


# --- batching is opt-in, and checked -------------------------------------------------------


@pytest.fixture(scope="module")
def mixing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models that combine values along the first axis, and one whose state's batch axis is
    the second: batching any of them answers clients with each other's rows."""
    return onnx_models.write_models(
        tmp_path_factory.mktemp("mixing"),
        onnx_models.cumsum_rows, onnx_models.softmax_rows, onnx_models.recurrent,
        onnx_models.unrunnable, onnx_models.token_max,
    )  # fmt: skip


def requests_for(name: str, count: int, seed: int) -> list[dict[str, np.ndarray]]:
    """`count` requests of distinct values, one to three rows each."""
    rng = np.random.default_rng(seed)
    if name == "recurrent":  # rows are the sequence, which the state's directions (2) must match
        return [{"x": rng.standard_normal((2, 1 + i % 3, 4)).astype(np.float32),
                 "h0": rng.standard_normal((2, 1 + i % 3, 8)).astype(np.float32)}
                for i in range(count)]  # fmt: skip
    return [{"x": rng.standard_normal((1 + i % 3, 4)).astype(np.float32)} for i in range(count)]


def wrong_answers(server: servekit.Server, model: Path, name: str, count: int = 200) -> int:
    """Send `count` requests from 32 concurrent clients; how many answers differ from what
    ONNX Runtime gives for that request alone."""
    session = ort.InferenceSession(str(model))
    requests = requests_for(name, count, seed=count)
    if name != "recurrent":  # one input, named as the model names it
        (spec,) = session.get_inputs()
        requests = [{spec.name: feeds["x"]} for feeds in requests]

    def call(client: httpx.Client, feeds: dict[str, np.ndarray]) -> bool:
        body = {"inputs": [{"name": n, "shape": list(v.shape), "datatype": "FP32",
                            "data": v.reshape(-1).tolist()} for n, v in feeds.items()]}  # fmt: skip
        answer = client.post(f"/v2/models/{name}/infer", json=body)
        assert answer.status_code == 200, answer.text
        expected = session.run(None, feeds)
        got = [np.array(o["data"], np.float32).reshape(o["shape"])
               for o in answer.json()["outputs"]]  # fmt: skip
        return not all(np.allclose(g, e, rtol=1e-4, atol=1e-5)
                       for g, e in zip(got, expected, strict=True))  # fmt: skip

    with httpx.Client(base_url=server.url, timeout=30) as client, ThreadPoolExecutor(32) as pool:
        return sum(pool.map(lambda feeds: call(client, feeds), requests))


def scrape(server: servekit.Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


def _clients_then_stop(
    server: servekit.Server, model: Path, name: str, count: int = 200
) -> tuple[int, str, dict[str, Any], float]:
    """Concurrent clients' wrong answers, then what the server says of its batching: the
    metrics text, the model config and the batching gauge; the server then exits cleanly."""
    try:
        wrong = wrong_answers(server, model, name, count=count)
        metrics = httpx.get(f"{server.url}/metrics").text
        config = httpx.get(f"{server.url}/v2/models/{name}/config").json()
        enabled = scrape(server, "modelserve_batching_enabled")
    finally:
        assert server.stop() == 0
    return wrong, metrics, config, enabled


def test_batching_is_off_by_default(mixing: Path, log_dir: Path) -> None:
    """No flag: each request runs alone, even with a batching window that would have merged
    them. A CumSum over axis 0 used to answer most concurrent clients with others' rows."""
    model = mixing / "cumsum_rows.onnx"
    server = servekit.start(model, "--max-delay-ms", "50", log_dir=log_dir)
    wrong, metrics, config, enabled = _clients_then_stop(server, model, "cumsum_rows")
    assert wrong == 0
    _, batches = histogram(metrics, "modelserve_batch_size")
    assert batches == 200  # one inference per request
    assert enabled == 0
    assert config["max_batch_size"] == 0
    assert config["input"][0]["dims"] == [-1, 4]  # Triton's way: no batch dim, full shapes
    assert config["parameters"]["batching"] == {"string_value": "off"}


@pytest.mark.parametrize("name", ["cumsum_rows", "softmax_rows", "recurrent"])
def test_batching_asked_for_is_refused_when_the_check_differs(
    mixing: Path, log_dir: Path, name: str
) -> None:
    """--batching true: the start-up check runs distinct rows batched and alone, sees the
    answers differ (or the batch fail), and leaves batching off: one warning, the gauge at 0,
    the reason in the config, and every concurrent client gets its own answer."""
    model = mixing / f"{name}.onnx"
    server = servekit.start(model, "--batching", "true", "--max-delay-ms", "20", log_dir=log_dir)
    try:
        wrong = wrong_answers(server, model, name)
        config = httpx.get(f"{server.url}/v2/models/{name}/config").json()
        enabled = scrape(server, "modelserve_batching_enabled")
    finally:
        assert server.stop() == 0
    assert wrong == 0
    assert enabled == 0
    assert config["max_batch_size"] == 0
    assert config["parameters"]["batching"] == {"string_value": "off"}
    reason = config["parameters"]["batching_reason"]["string_value"]
    warnings = [line for line in server.logs().splitlines() if " WARNING " in line]
    assert len(warnings) == 1, warnings
    assert "batching stays off" in warnings[0]
    assert reason in warnings[0]


def test_a_row_independent_model_batches_when_asked(model_dir: Path, log_dir: Path) -> None:
    server = servekit.start(model_dir / "mlp.onnx", "--batching", "true", "--max-delay-ms", "50",
                            log_dir=log_dir)  # fmt: skip
    wrong, metrics, config, enabled = _clients_then_stop(
        server, model_dir / "mlp.onnx", "mlp", count=96
    )
    assert wrong == 0
    rows, batches = histogram(metrics, "modelserve_batch_size")
    assert batches < 96 / 2, f"{batches} batches for 96 requests"
    assert rows / batches > 1
    assert enabled == 1
    assert config["max_batch_size"] == 32
    assert config["parameters"]["batching"] == {"string_value": "on"}


def test_warmup_samples_feed_the_batching_check(
    mixing: Path, log_dir: Path, tmp_path: Path
) -> None:
    """A model no synthetic input runs can still batch: the check runs on the samples' rows."""
    rows = np.arange(15, dtype=np.float32).reshape(3, 5)
    sample = {"inputs": [{"name": "x", "shape": [3, 5], "datatype": "FP32",
                          "data": rows.reshape(-1).tolist()}]}  # fmt: skip
    path = tmp_path / "samples.json"
    path.write_text(orjson.dumps(sample).decode())
    server = servekit.start(mixing / "unrunnable.onnx", "--batching", "true",
                            "--warmup-file", str(path), log_dir=log_dir)  # fmt: skip
    try:
        config = httpx.get(f"{server.url}/v2/models/unrunnable/config").json()
    finally:
        assert server.stop() == 0
    assert config["max_batch_size"] == 32
    assert "warm-up samples" in config["parameters"]["batching_reason"]["string_value"]


def test_the_check_in_process(mixing: Path, model_dir: Path) -> None:
    """The check itself: the row-mixing models fail it, row-independent ones pass, and a
    model whose output is not split by rows (flat) is left to the run-time guard."""
    for name, state in (("cumsum_rows", "off"), ("softmax_rows", "off"), ("recurrent", "off")):
        model = load(mixing, name)
        assert model.batching.state == state, model.batching
    for name in ("mlp", "multi", "ragged", "flat"):
        assert load(model_dir, name).batching.state == "on", name
    assert load(model_dir, "mlp", batching=False).batching.state == "off"
    assert load(model_dir, "fixed").batching.reason == "input 'input' has a fixed first dimension"


def token_sample(*rows: list[int]) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input_ids",
                    "shape": [len(rows), len(rows[0])],
                    "datatype": "INT64",
                    "data": [t for r in rows for t in r],
                }
            ]
        }
    )


@pytest.mark.parametrize(
    "bodies",
    [
        pytest.param((token_sample([5, 7, 9]),), id="one-row-sample"),
        pytest.param((token_sample([5, 7, 9]), token_sample([5, 7, 9])), id="two-alike"),
    ],
)
def test_the_check_needs_distinct_rows_from_integer_samples(
    mixing: Path, bodies: tuple[bytes, ...]
) -> None:
    """A lone one-row sample of token ids: its variants used to keep the integers, so the check
    merged copies of one row, which a model pooling across the batch answers as it does alone.
    Batching went on, and 563 of 960 concurrent one-row requests got other clients' values.
    The variants now shuffle the sample's own integers (still valid ids), and a check that
    still sees only one distinct row leaves batching off, saying so."""
    model = Model.load(mixing / "token_max.onnx", name="token_max", version="1", sha256="-",
                       options=SessionOptions())  # fmt: skip
    prepare(model, samples=Samples(mixing / "samples.json", bodies), batching=True)
    assert model.batching.state == "off", model.batching
    if len(bodies) == 1:
        assert "combines values along its first dimension" in model.batching.reason


def test_a_check_of_copies_of_one_row_says_so(mixing: Path) -> None:
    """Samples whose every row is the same, and no value to shuffle: nothing shows whether the
    model mixes rows, so batching stays off with that reason."""
    model = Model.load(mixing / "token_max.onnx", name="token_max", version="1", sha256="-",
                       options=SessionOptions())  # fmt: skip
    samples = Samples(mixing / "samples.json", (token_sample([5, 5], [5, 5]),))
    prepare(model, samples=samples, batching=True)
    assert model.batching.state == "off", model.batching
    assert "distinct rows" in model.batching.reason


def test_one_clients_bad_token_id_fails_only_its_own_request(tmp_path: Path, log_dir: Path) -> None:
    """An out-of-vocabulary token id makes ONNX Runtime's Gather fail (INVALID_ARGUMENT). Merged
    into a batch, it used to fail the whole batch: 141 of 620 other clients' requests got a
    500. A failed batch is now re-run one request at a time, so only the bad request fails,
    and ONNX Runtime's own error line, which quotes the value, stays out of the logs. The bad
    request's answer stays a 500: the server cannot tell a client's out-of-range id from a
    model whose table is too small, and a canary's analysis must count the latter."""
    model = onnx_models.lookup(tmp_path / "lookup.onnx")
    server = servekit.start(model, "--batching", "true", "--max-delay-ms", "20", log_dir=log_dir)

    def call(bad: bool) -> tuple[bool, int]:
        ids = [1, 2, 99999 if bad else 3]
        body = {"inputs": [{"name": "input_ids", "shape": [1, 3], "datatype": "INT64",
                            "data": ids}]}  # fmt: skip
        answer = httpx.post(f"{server.url}/v2/models/lookup/infer", json=body, timeout=30)
        return bad, answer.status_code

    try:
        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(call, [n % 8 == 0 for n in range(160)]))
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        assert server.stop() == 0
    _, batches = histogram(metrics, "modelserve_batch_size")
    assert batches < 160  # requests were merged
    assert {code for bad, code in codes if not bad} == {200}
    assert {code for bad, code in codes if bad} == {500}
    assert "99999" not in server.logs()


def test_samples_of_different_lengths_still_check_batching(tmp_path: Path) -> None:
    """Two warm-up samples of different sequence lengths cannot be merged with each other,
    and the check used to give up ("needs two requests of one shape") although variants of a
    sample can be: a row-independent text model stayed unbatched. Variants now make up any
    group the samples lack."""
    model = Model.load(onnx_models.lookup(tmp_path / "lookup.onnx"), name="lookup", version="1",
                       sha256="-", options=SessionOptions())  # fmt: skip
    samples = Samples(tmp_path / "samples.json", (token_sample([5, 7, 9]), token_sample([4, 2])))
    prepare(model, samples=samples, batching=True)
    assert model.batching.state == "on", model.batching


def test_a_sample_of_empty_rows_leaves_batching_off_without_a_crash(tmp_path: Path) -> None:
    """A sample of zero-length sequences ([1, 0]) runs, but its rows have no values to tell
    apart: the distinct-rows count must not fail reshaping them (numpy cannot infer -1 for an
    empty array), and batching stays off for want of distinct rows."""
    model = Model.load(onnx_models.lookup(tmp_path / "lookup.onnx"), name="lookup", version="1",
                       sha256="-", options=SessionOptions())  # fmt: skip
    empty = orjson.dumps({"inputs": [{"name": "input_ids", "shape": [1, 0], "datatype": "INT64",
                                      "data": []}]})  # fmt: skip
    prepare(model, samples=Samples(tmp_path / "samples.json", (empty,)), batching=True)
    assert model.batching.state == "off"
    assert "distinct rows" in model.batching.reason


def test_a_scalar_input_is_named_as_the_reason_batching_stays_off(tmp_path: Path) -> None:
    """A scalar beside the batch (a temperature) has no batch dimension to merge along; the
    reason said it "has a fixed first dimension", which a scalar has not."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "temperature"], ["y"])],
        "scaled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("temperature", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )  # fmt: skip
    path = onnx_models.save_graph(graph, tmp_path / "scaled.onnx")
    model = Model.load(path, name="scaled", version="1", sha256="-", options=SessionOptions())
    prepare(model, batching=True)
    assert model.batching.state == "off"
    assert model.batching.reason == "input 'temperature' is a scalar: it has no batch dimension"
