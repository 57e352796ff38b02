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

Batching assumes every output keeps the batch dimension. A model whose dynamic first output
dimension means something else (a Reshape to [-1], a list of detections) is caught on its
first batch: that batch is re-run one request at a time and batching is turned off for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from .errors import InferenceFailedError, UnavailableError
from .metrics import Metrics
from .model import Feeds, Model

log = logging.getLogger("modelserve.batching")

BatchKey = tuple[tuple[str, tuple[int, ...], str], ...]

# A lone request runs on the event loop when it is expected to take less than this.
INLINE_MAX_SECONDS: Final = 0.002
# An inline run this long shows the model's cost does not follow its input size: stop inlining.
INLINE_GIVE_UP_SECONDS: Final = 5 * INLINE_MAX_SECONDS


Done = Callable[[Feeds | BaseException], None]


@dataclass(slots=True)
class Outcome:
    """What a worker hands back: each job's rows, the batch's inputs and the inference time."""

    results: list[Feeds]
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
        return ((name, array.shape[1:], array.dtype.str),)
    return tuple(sorted((n, a.shape[1:], a.dtype.str) for n, a in feeds.items()))


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
        self._max_rows = max_batch_size if model.batchable else 1
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
        self._idle: asyncio.Event | None = None
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
        """Whether the model's first dimension is still taken as the batch: False for a model
        that is not batchable, and for good once an output came back without the batch's rows
        (the model config then reports max_batch_size 0, as Triton does for such a model)."""
        return self._model.batchable and not self._split_failed

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

    async def wait_idle(self) -> None:
        """Return once nothing is queued or running."""
        while self._pending or self._busy:
            self._idle = asyncio.Event()
            await self._idle.wait()

    def close(self) -> None:
        """Stop the worker threads (after wait_idle)."""
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
                outcome = self._run(batch)
                if isinstance(outcome, Outcome) and outcome.seconds > INLINE_GIVE_UP_SECONDS:
                    self._may_inline = False
                    log.info("model %r: an inline inference took %.3f s, so every inference "
                             "now runs on a worker", self._model.name, outcome.seconds)  # fmt: skip
                self._complete(batch, outcome)
                continue
            self._work.put((batch, loop))
        self._notify_idle()

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
            outcome = self._run(batch)
            # RuntimeError: the loop closed during shutdown, and nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._complete, batch, outcome)

    def _run(self, batch: list[Job]) -> Outcome | BaseException:
        try:
            return self._infer(batch)
        except Exception as exc:  # reported to every request of the batch
            return exc

    def _infer(self, batch: list[Job]) -> Outcome:
        first = batch[0]
        if len(batch) == 1:
            feeds = first.feeds
            outputs = first.outputs
        else:
            feeds = {n: np.concatenate([job.feeds[n] for job in batch]) for n in first.feeds}
            outputs = _union_outputs(batch)
        started = time.perf_counter()
        results = self._call(feeds, outputs)
        seconds = time.perf_counter() - started
        if len(batch) == 1:
            return Outcome([results], feeds, seconds)
        total = sum(job.rows for job in batch)
        if any(value.ndim == 0 or value.shape[0] != total for value in results.values()):
            self._split_failed = True  # read on the loop, which turns batching off
            return self._one_by_one(batch, feeds)
        split: list[Feeds] = []
        offset = 0
        for job in batch:
            end = offset + job.rows
            split.append({name: value[offset:end] for name, value in results.items()})
            offset = end
        return Outcome(split, feeds, seconds)

    def _one_by_one(self, batch: list[Job], feeds: Feeds) -> Outcome:
        """Answer a batch whose outputs cannot be split by rows: each request on its own."""
        started = time.perf_counter()
        results = [self._call(job.feeds, job.outputs) for job in batch]
        return Outcome(results, feeds, time.perf_counter() - started)

    def _call(self, feeds: Feeds, outputs: list[str] | None) -> Feeds:
        try:
            return self._model.run(feeds, outputs)
        except Exception as exc:
            raise InferenceFailedError(f"inference failed: {exc}") from exc

    def _complete(self, batch: list[Job], outcome: Outcome | BaseException) -> None:
        self._busy -= 1
        if self._split_failed and self._max_rows > 1:  # even if re-running one by one failed
            self._max_rows = 1
            log.warning("model %r: an output does not keep the batch dimension, so requests "
                        "are no longer batched", self._model.name)  # fmt: skip
        if isinstance(outcome, BaseException):
            for job in batch:
                self._answer(job, outcome)
        else:
            rows = sum(job.rows for job in batch) or 1
            try:
                self._metrics.observe_batch(rows, outcome.seconds, outcome.feeds)
            except Exception:  # the answers matter more than the statistics
                log.exception("recording a batch's metrics failed")
            if len(batch) == 1 and batch[0].size:
                size = batch[0].size
                per_value = outcome.seconds / size
                last = self._value_s
                self._value_s = per_value if last is None else 0.8 * last + 0.2 * per_value
                self._timed_size = max(self._timed_size, size)
            for job, results in zip(batch, outcome.results, strict=True):
                self._answer(job, results)
        # Dispatch on the next loop iteration, after the loop has read what arrived meanwhile:
        # the replies just sent are often answered by new requests within microseconds.
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch)
        else:
            self._notify_idle()

    @staticmethod
    def _answer(job: Job, result: Feeds | BaseException) -> None:
        try:
            job.done(result)
        except Exception:  # one request's failure must not cost the others their answer
            log.exception("answering a request failed")

    def _notify_idle(self) -> None:
        if self._idle is not None and not self._pending and not self._busy:
            self._idle.set()


def _union_outputs(batch: list[Job]) -> list[str] | None:
    names: dict[str, None] = {}
    for job in batch:
        if job.outputs is None:
            return None
        names.update(dict.fromkeys(job.outputs))
    return list(names)
