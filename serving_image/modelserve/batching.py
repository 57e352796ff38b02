"""Dynamic batching: concurrent requests become one ONNX Runtime call, off the event loop.

Requests queue on the event loop; whenever an inference worker is free, everything compatible
that has queued (up to `max_batch_size` rows) goes to it as one batch. At low load a request
runs at once (a batch of one, no added delay); under load the requests that arrive while the
model is busy form the next batch, which is where the throughput comes from. `max_delay_s`
optionally holds a batch back that long for more rows to arrive, as Triton's queue delay does.

Each worker is a plain thread blocked on a queue; results come back to the loop with one
thread-safe call per batch, not one per request. (A ThreadPoolExecutor costs about four times
as much per hand-off, which on a small model is more than the inference itself.)

One exception: a lone request that finds the model idle, is no larger than a lone request
already timed, and is expected (from the time per input value of earlier lone requests) to
take under `INLINE_MAX_SECONDS` runs on the loop thread itself. Nothing else is waiting, so
nothing is held up, and it saves the two thread hand-offs (wake the worker, wake the loop):
about 30 µs, a seventh of a small model's whole request at concurrency 1. Anything slower or
larger stays on the workers. Only models whose inputs are all floating point qualify (integer
or string inputs may be sizes or trip counts, whose cost no input size predicts), and one
inline run over `INLINE_GIVE_UP_SECONDS` turns the shortcut off for good, so a health check or
a scrape is held up for about that bound at most once.

Batching is opt-in (`--batching`), and even then only trusted once `check` has seen the model
answer distinct rows batched exactly as it answers them one by one: a model that combines
values along the first axis (CumSum or Softmax over it, a sequence-first recurrent export, a
state shaped [2, batch, H]) would otherwise answer each client with other clients' rows. Off,
every request runs alone.

The check cannot see every way an output may lose the batch dimension: a model whose dynamic
first output dimension means something else (a Reshape to [-1], a list of detections) is also
caught on its first batch, which is re-run one request at a time, and batching is turned off
for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from .errors import (
    InferenceFailedError,
    TooMuchMemoryError,
    UnavailableError,
)
from .metrics import Metrics
from .model import (
    Feeds,
    Finding,
    Model,
    memory_bound,
    memory_exhausted,
    one_line,
)

log = logging.getLogger("modelserve.batching")

# The dtype itself, not its `.str`: that string is formatted anew on every read.
BatchKey = tuple[tuple[str, tuple[int, ...], np.dtype[Any]], ...]

# A lone request runs on the event loop when it is expected to take less than this.
INLINE_MAX_SECONDS: Final = 0.002
# An inline run this long shows the model's cost does not follow its input size: stop inlining.
INLINE_GIVE_UP_SECONDS: Final = 5 * INLINE_MAX_SECONDS


Done = Callable[[Feeds | BaseException], None]
# What `Batcher._call` raises when ONNX Runtime fails: the request's fault, or the model's.
_RUN_ERRORS: Final = (InferenceFailedError, TooMuchMemoryError)


@dataclass(slots=True)
class BatchResult:
    """What a worker hands back for a batch: each job's rows of the outputs, the batch's
    inputs (for the drift statistics) and the inference time."""

    results: list[Feeds | BaseException]
    feeds: Feeds
    seconds: float


@dataclass(slots=True)
class Job:
    """One request waiting for the model; `done` gets its rows (or the error), on the loop."""

    feeds: Feeds
    rows: int
    outputs: list[str] | None
    done: Done
    key: BatchKey | None
    enqueued: float
    size: int  # input values, all inputs together (0 where inlining is off): the estimate's unit


def batch_key(feeds: Feeds) -> BatchKey:
    """Requests batch together only when every input agrees on everything but the row count."""
    if len(feeds) == 1:
        ((name, array),) = feeds.items()
        return ((name, array.shape[1:], array.dtype),)
    return tuple(sorted((n, a.shape[1:], a.dtype) for n, a in feeds.items()))


class Batcher:
    """Queues requests and feeds batches to a small pool of inference threads."""

    def __init__(
        self,
        model: Model,
        metrics: Metrics,
        *,
        max_batch_size: int,
        max_delay_s: float = 0.0,
        max_queue: int = 0,
        instances: int = 1,
    ) -> None:
        self._model = model
        self._metrics = metrics
        # Merge clients' rows only where the start-up check allowed it (model.batching).
        self._batching = model.batchable and model.batching.state == "on"
        self._max_rows = max_batch_size if self._batching else 1
        self._max_delay = max_delay_s
        self._max_queue = max_queue
        self._instances = instances
        self._work: queue.SimpleQueue[tuple[list[Job], asyncio.AbstractEventLoop] | None]
        self._work = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._worker, name=f"infer-{i}", daemon=True)
            for i in range(instances)
        ]
        for thread in self._threads:
            thread.start()
        self._pending: deque[Job] = deque()
        self._busy = 0
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._flush_now = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Running mean of inference seconds per input value of lone requests, and the largest
        # lone request timed; None until one has been, so an unknown model starts on a worker.
        self._value_s: float | None = None
        self._timed_size = 0
        # Only where cost follows input size: numeric features, not integers or strings that
        # may be sizes, lengths or trip counts. Off for good once an inline run overshoots.
        self._may_inline = all(spec.dtype.kind == "f" for spec in model.inputs)
        self._split_failed = False  # set by a worker: an output lost the batch dimension

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a worker."""
        return len(self._pending)

    @property
    def batches(self) -> bool:
        """Whether the model's first dimension is still taken as the batch: False unless
        batching was asked for and passed the start-up check, and for good once an output came
        back without the batch's rows (the model config then reports max_batch_size 0, as
        Triton does for a model that does not batch)."""
        return self._batching and not self._split_failed

    def submit(self, feeds: Feeds, rows: int, outputs: list[str] | None, done: Done) -> None:
        """Queue one request; `done` is called on the loop with its own rows of the outputs.

        A plain callback rather than a future: the answer is written in the same loop
        iteration the results arrive in, with no future or task per request.
        """
        if self._max_queue and len(self._pending) >= self._max_queue:
            raise UnavailableError("the inference queue is full, retry shortly", retry_after=1)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        key = batch_key(feeds) if self._max_rows > 1 and rows > 0 else None
        size = sum(array.size for array in feeds.values()) if self._may_inline else 0
        self._pending.append(Job(feeds, rows, outputs, done, key, loop.time(), size))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._dispatch)

    def flush(self) -> None:
        """Stop holding batches back for `max_delay_s` (used when draining)."""
        self._flush_now = True
        if self._loop is not None and self._pending:
            self._loop.call_soon(self._dispatch)

    def close(self) -> None:
        """Stop the worker threads (once nothing is queued or running)."""
        for _ in self._threads:
            self._work.put(None)

    def _take(self) -> list[Job]:
        """The next batch: the head job plus every compatible job that fits, in FIFO order."""
        head = self._pending.popleft()
        if head.key is None or head.rows >= self._max_rows:
            return [head]
        batch = [head]
        rows = head.rows
        skipped: list[Job] = []
        while self._pending and rows < self._max_rows:
            job = self._pending.popleft()
            if job.key == head.key and rows + job.rows <= self._max_rows:
                batch.append(job)
                rows += job.rows
            else:
                skipped.append(job)
                if len(skipped) > 64:  # do not scan a long queue of strangers
                    break
        self._pending.extendleft(reversed(skipped))
        return batch

    def _dispatch(self) -> None:
        self._scheduled = False
        loop = self._loop
        assert loop is not None
        while self._busy < self._instances and self._pending:
            if self._should_wait(loop):
                return
            batch = self._take()
            self._busy += 1
            if self._inline(batch):
                result = self._run(batch)
                if isinstance(result, BatchResult) and result.seconds > INLINE_GIVE_UP_SECONDS:
                    self._may_inline = False
                    log.info("model %r: an inline inference took %.3f s, so every inference "
                             "now runs on a worker", self._model.name, result.seconds)  # fmt: skip
                self._complete(batch, result)
                continue
            self._work.put((batch, loop))

    def _inline(self, batch: list[Job]) -> bool:
        """Run on the loop thread: a lone request, the model otherwise idle, and fast."""
        job = batch[0]
        return (
            self._may_inline
            and len(batch) == 1
            and self._busy == 1
            and not self._pending
            and self._value_s is not None
            and job.size <= self._timed_size
            and self._value_s * job.size < INLINE_MAX_SECONDS
        )

    def _should_wait(self, loop: asyncio.AbstractEventLoop) -> bool:
        """With a max delay, hold a short batch until it fills or its oldest job's time is up."""
        if self._max_delay <= 0 or self._flush_now:
            return False
        head = self._pending[0]
        if head.key is None:
            return False
        if sum(job.rows for job in self._pending) >= self._max_rows:
            return False
        deadline = head.enqueued + self._max_delay
        if loop.time() >= deadline:
            return False
        if self._timer is None or self._timer.when() > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._on_timer)
        return True

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _worker(self) -> None:
        """Worker thread: one ONNX Runtime call per batch, then the rows go back to the loop."""
        while (item := self._work.get()) is not None:
            batch, loop = item
            result = self._run(batch)
            # RuntimeError: the loop closed during shutdown, and nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._complete, batch, result)

    def _run(self, batch: list[Job]) -> BatchResult | BaseException:
        try:
            return self._infer(batch)
        except Exception as exc:  # reported to every request of the batch
            return exc

    def _infer(self, batch: list[Job]) -> BatchResult:
        first = batch[0]
        if len(batch) == 1:
            feeds = first.feeds
            outputs = first.outputs
        else:
            feeds = {n: np.concatenate([job.feeds[n] for job in batch]) for n in first.feeds}
            outputs = _union_outputs(batch)
        started = time.perf_counter()
        if len(batch) == 1:
            results = self._call(feeds, outputs)
            return BatchResult([results], feeds, time.perf_counter() - started)
        try:
            results = self._call(feeds, outputs)
        except _RUN_ERRORS:
            # One request's values (a token id out of range) fail the whole batch: run each
            # alone, so the others are answered and only the culprit gets the error.
            return self._one_by_one(batch, feeds)
        seconds = time.perf_counter() - started
        total = sum(job.rows for job in batch)
        if any(value.ndim == 0 or value.shape[0] != total for value in results.values()):
            self._split_failed = True  # read on the loop, which turns batching off
            return self._one_by_one(batch, feeds)
        split: list[Feeds | BaseException] = []
        offset = 0
        for job in batch:
            end = offset + job.rows
            split.append({name: value[offset:end] for name, value in results.items()})
            offset = end
        return BatchResult(split, feeds, seconds)

    def _one_by_one(self, batch: list[Job], feeds: Feeds) -> BatchResult:
        """Answer a batch that cannot be answered as one (its outputs cannot be split by rows,
        or one request's values failed it): each request on its own, each with its own error."""
        started = time.perf_counter()
        results: list[Feeds | BaseException] = []
        for job in batch:
            try:
                results.append(self._call(job.feeds, job.outputs))
            except _RUN_ERRORS as exc:
                results.append(exc)
        return BatchResult(results, feeds, time.perf_counter() - started)

    def _call(self, feeds: Feeds, outputs: list[str] | None) -> Feeds:
        try:
            return self._model.run(feeds, outputs)
        except Exception as exc:
            if memory_exhausted(exc):
                raise TooMuchMemoryError(
                    "this input needs more memory than the model may use (--max-model-memory "
                    f"{memory_bound()} bytes)"
                ) from exc
            raise InferenceFailedError(f"inference failed: {one_line(exc)}") from exc

    def _complete(self, batch: list[Job], result: BatchResult | BaseException) -> None:
        self._busy -= 1
        if self._split_failed and self._max_rows > 1:  # even if re-running one by one failed
            self._max_rows = 1
            self._model.batching = Finding(
                "off", "a batch's output came back without the batch's rows, so requests are "
                "no longer batched",
            )  # fmt: skip
            self._metrics.set_batching(False)
            log.warning("model %r: an output does not keep the batch dimension, so requests "
                        "are no longer batched", self._model.name)  # fmt: skip
        if isinstance(result, BaseException):
            for job in batch:
                self._answer(job, result)
        else:
            rows = sum(job.rows for job in batch) or 1
            try:
                self._metrics.observe_batch(rows, result.seconds, result.feeds)
            except Exception:  # the answers matter more than the statistics
                log.exception("recording a batch's metrics failed")
            if len(batch) == 1 and batch[0].size:
                size = batch[0].size
                per_value = result.seconds / size
                last = self._value_s
                self._value_s = per_value if last is None else 0.8 * last + 0.2 * per_value
                self._timed_size = max(self._timed_size, size)
            for job, results in zip(batch, result.results, strict=True):
                self._answer(job, results)
        # Dispatch on the next loop iteration, after the loop has read what arrived meanwhile:
        # the replies just sent are often answered by new requests within microseconds.
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    @staticmethod
    def _answer(job: Job, result: Feeds | BaseException) -> None:
        try:
            job.done(result)
        except Exception:  # one request's failure must not cost the others their answer
            log.exception("answering a request failed")


def _union_outputs(batch: list[Job]) -> list[str] | None:
    names: dict[str, None] = {}
    for job in batch:
        if job.outputs is None:
            return None
        names.update(dict.fromkeys(job.outputs))
    return list(names)


# Float answers for rows batched may differ from the same rows alone in the last bits (the
# kernels block a taller matrix differently); a model mixing rows differs by far more.
CHECK_RTOL: Final = 1e-3


def check(
    model: Model, requests: Sequence[tuple[Feeds, int]], *, max_rows: int, source: str
) -> Finding:
    """Whether batching `model` is sound: distinct requests (feeds and their rows, each known to
    run alone) run one by one and then as one batch, as the batcher would merge them; "on"
    only if the batch answers every output as the requests alone do.

    Answers must agree as concatenations along the first axis. An output whose first dimension
    is not the batch's rows, although its concatenation agrees (a Reshape to [-1]), is left to
    the run-time guard, which re-runs such a batch one request at a time.
    """
    fixed = next((s for s in model.inputs + model.outputs if not s.shape or s.shape[0] != -1),
                 None)  # fmt: skip
    if fixed is not None:
        kind = "input" if fixed in model.inputs else "output"
        if fixed.any_rank:
            return Finding("off", f"{kind} {fixed.name!r} has no shape in the model, so no known "
                                  "batch dimension")  # fmt: skip
        if not fixed.shape:
            return Finding("off", f"{kind} {fixed.name!r} is a scalar: it has no batch dimension")
        return Finding("off", f"{kind} {fixed.name!r} has a fixed first dimension")
    if max_rows < 2:
        return Finding("off", "--max-batch-size is 1")
    group = _mergeable(requests, max_rows)
    if len(group) < 2:
        return Finding("off", f"the batching check needs two requests of one shape that fit "
                              f"--max-batch-size {max_rows}, and {source} gave none")  # fmt: skip
    rows = sum(count for _, count in group)
    what = f"{len(group)} requests ({rows} rows) from {source}"
    merged = {name: np.concatenate([feeds[name] for feeds, _ in group]) for name in group[0][0]}
    if distinct_rows(merged) < 2:
        return Finding("off", f"the batching check needs distinct rows, and {what} are all "
                              "alike: give warm-up samples whose rows differ")  # fmt: skip
    try:
        alone = [model.probe(feeds) for feeds, _ in group]
    except Exception as exc:
        return Finding("off", f"a request from {source} fails alone: {one_line(exc)}")
    try:
        batched = model.probe(merged)
    except Exception as exc:
        return Finding("off", f"{what} fail as one batch, though each runs alone: "
                              f"{one_line(exc)}")  # fmt: skip
    for name in model.output_names:
        parts = [answer[name] for answer in alone]
        got = batched[name]
        if got.ndim == 0 or any(part.ndim == 0 for part in parts):
            return Finding("off", f"output {name!r} is a scalar: it has no batch dimension")
        if len({part.shape[1:] for part in parts}) > 1 or got.shape[1:] != parts[0].shape[1:]:
            return Finding("off", f"output {name!r} changes shape with the batch's contents")
        want = np.concatenate(parts)
        if got.shape != want.shape:
            return Finding("off", f"output {name!r} has {got.shape[0]} rows for {what} batched, "
                                  f"{want.shape[0]} from them alone")  # fmt: skip
        if not _agree(got, want):
            return Finding("off", f"output {name!r} differs when {what} are batched: the model "
                                  f"combines values along its first dimension")  # fmt: skip
    return Finding("on", f"checked at start-up: {what} answer batched as they do alone")


def distinct_rows(feeds: Feeds) -> int:
    """How many different rows (all inputs' values along the first axis together) `feeds`
    holds: copies of one row answer alike batched or alone, even from a model that mixes rows
    (a maximum over the batch), so they prove nothing."""
    columns = [array.reshape(array.shape[0], math.prod(array.shape[1:]))
               for array in feeds.values() if array.ndim]  # fmt: skip
    if not columns:
        return 0
    rows = {
        tuple(column[row].tobytes() if column.dtype.kind != "O" else tuple(column[row].tolist())
              for column in columns)
        for row in range(columns[0].shape[0])
    }  # fmt: skip
    return len(rows)


def _mergeable(requests: Sequence[tuple[Feeds, int]], max_rows: int) -> list[tuple[Feeds, int]]:
    """The largest set of requests the batcher would merge into one batch: one batch key,
    at most `max_rows` rows."""
    groups: dict[BatchKey, list[tuple[Feeds, int]]] = {}
    for feeds, rows in requests:
        if rows > 0:
            groups.setdefault(batch_key(feeds), []).append((feeds, rows))
    best: list[tuple[Feeds, int]] = []
    for members in groups.values():
        fitting, total = [], 0
        for feeds, rows in members:
            if total + rows <= max_rows:
                fitting.append((feeds, rows))
                total += rows
        if len(fitting) > len(best):
            best = fitting
    return best


def _agree(got: np.ndarray[Any, Any], want: np.ndarray[Any, Any]) -> bool:
    if want.dtype.kind not in "fc":
        return bool(np.array_equal(got, want))
    finite = np.abs(want[np.isfinite(want)])
    scale = float(finite.max()) if finite.size else 0.0
    rtol = max(CHECK_RTOL, 8 * float(np.finfo(want.dtype).eps))
    return bool(np.allclose(got, want, rtol=rtol, atol=rtol * scale, equal_nan=True))
