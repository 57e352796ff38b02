"""Prometheus metrics: the numbers the operator's rollout analysis judges a revision by.

Names follow Prometheus conventions (`modelserve_` prefix, base units, `_total` counters) and
every series carries `model` and `version`, so a canary and its stable revision are compared on
the same query.

The per-request series (requests, latencies, batch sizes, drift) are plain counters updated only
on the event loop thread, so they need no lock: an observation is a bisect and two additions
instead of prometheus_client's locked objects, and drift statistics are folded in bulk (every
few hundred rows, and before each scrape) rather than computed per batch. On a small model that
difference is a measurable share of a request's cost. Gauges that describe live state (queue
depth, in-flight) are read at scrape time from the objects that own them.

The families live in two registries, because they differ in what they reveal. The operational
ones (request counts by code, latency and batch-size histograms, queue depth, in-flight, load
time, readiness) say how the server is doing and nothing about what clients sent. The drift
statistics (per-feature sums, squares, means, variances, row and non-finite counts) are computed
from request values: one request moves the sums by exactly its values. The app serves the second
registry only to a scrape it trusts with payloads (see auth.may_read_payloads).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import numpy as np
from prometheus_client import CollectorRegistry, Gauge, Info, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

CONTENT_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"

# At most 50% apart from 1 ms to 10 s (25-30% above 10 ms): a p99 read from these is within
# a bucket's width. tests/unit/test_analysis_window.py pins a copy: change both together.
LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0065, 0.008,
    0.01, 0.013, 0.016, 0.02, 0.025, 0.032, 0.04, 0.05, 0.065, 0.08,
    0.1, 0.13, 0.16, 0.2, 0.25, 0.32, 0.4, 0.5, 0.65, 0.8,
    1.0, 1.3, 1.6, 2.0, 2.5, 3.2, 4.0, 5.0, 6.5, 8.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
DRIFT_FOLD_ROWS: Final = 512
# Values beyond ±1e140 stay out of the drift sums: one 1e200 squares to Inf at once, while
# squares up to 1e280 keep the float64 sum of squares finite for some 1e28 rows.
DRIFT_MAX_ABS: Final = 1e140


class Histogram:
    """A Prometheus histogram for one thread (the event loop's): no lock needed."""

    __slots__ = ("bounds", "counts", "created", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        """Count one observation (`le` is inclusive, as Prometheus defines it)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        """Export as cumulative buckets, with a `_created` sample as prometheus_client writes
        (a changed one tells the operator's analysis that the process restarted)."""
        cumulative, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            cumulative.append((_le(bound), running))
        family.add_metric(labels, cumulative, self.total)
        names = family._labelnames
        family.samples.append(
            Sample(f"{family.name}_created", dict(zip(names, labels, strict=True)), self.created)
        )


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class DriftStats:
    """Running count, mean and variance of each input feature (the first N values of a row).

    The operator compares these between the stable and canary revisions to spot input drift.
    Sums and sums of squares are exported too, so a window's mean is Δsum / Δrows. Batches are
    queued by reference and folded in bulk, which costs a fraction of folding each one.

    A row with a NaN or an infinity among its tracked values is left out and those values are
    counted instead: folded in, one such value would turn every later mean and variance into NaN
    for the life of the process. Leaving out the whole row keeps Δsum / Δrows a mean.

    An input whose row width varies (a dynamic non-batch dimension, such as token ids) is
    tracked at the width of the first non-empty rows seen (at most N): wider rows count their
    first values, narrower rows are left out, since their positions do not line up with the
    tracked ones.
    """

    def __init__(self, max_features: int) -> None:
        self._max = max_features
        self._width: dict[str, int] = {}
        self._queued: dict[str, list[np.ndarray[Any, Any]]] = {}
        self._queued_rows = 0
        self.rows: dict[str, int] = {}
        self.nonfinite: dict[str, int] = {}
        self.sums: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
        self.squares: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}

    def add(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> None:
        """Queue one batch's inputs (numeric ones with a batch dimension)."""
        if self._max == 0:
            return
        rows = 0
        for name, array in feeds.items():
            if not (array.ndim and array.shape[0] and array.dtype.kind in "biuf"):
                continue
            flat = array.reshape(array.shape[0], math.prod(array.shape[1:]))
            if flat.shape[1] == 0:
                continue
            width = self._width.setdefault(name, min(flat.shape[1], self._max))
            if flat.shape[1] < width:
                continue
            self._queued.setdefault(name, []).append(flat[:, :width])
            rows = max(rows, array.shape[0])
        self._queued_rows += rows
        if self._queued_rows >= DRIFT_FOLD_ROWS:
            self.fold()

    def fold(self) -> None:
        """Fold what is queued into the running sums."""
        try:
            for name, arrays in self._queued.items():
                values = np.concatenate(arrays).astype(np.float64, copy=False)
                if arrays[0].dtype.kind == "f":
                    values = self._finite_rows(name, values)
                    if not values.shape[0]:
                        continue
                total = values.sum(axis=0)
                squares = np.einsum("ij,ij->j", values, values)
                if name in self.sums:
                    self.rows[name] += values.shape[0]
                    self.sums[name] += total
                    self.squares[name] += squares
                else:
                    self.rows[name] = values.shape[0]
                    self.sums[name] = total
                    self.squares[name] = squares
        finally:  # whatever happens, a bad batch must not stay queued and fail every scrape
            self._queued.clear()
            self._queued_rows = 0

    def _finite_rows(
        self, name: str, values: np.ndarray[Any, np.dtype[np.float64]]
    ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The rows whose tracked values are all usable; counts the others' values. Usable is
        finite and within ±DRIFT_MAX_ABS: a finite FP64 value like 1e200 squares to Inf in
        the running sum of squares, which would read Inf for the rest of the process. (NaN
        compares false, so one comparison covers NaN, ±Inf and the huge.)"""
        usable = np.abs(values) <= DRIFT_MAX_ABS
        if usable.all():
            return values
        bad = values.size - int(np.count_nonzero(usable))
        self.nonfinite[name] = self.nonfinite.get(name, 0) + bad
        kept: np.ndarray[Any, np.dtype[np.float64]] = values[usable.all(axis=1)]
        return kept


class _Hot(Collector):
    """Exports the loop-thread counters at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        base = ["model", "version"]
        requests = CounterMetricFamily(
            "modelserve_requests",
            "Requests answered, by protocol and HTTP status code: every inference request, "
            "and every refusal (protocol other outside inference routes); 499: the client "
            "hung up before its answer",
            labels=[*base, "protocol", "code"],
        )
        for (protocol, code), count in sorted(m.requests.items()):
            created = m.requests_created[(protocol, code)]
            requests.add_metric([*m.labels, protocol, str(code)], count, created=created)
        latency = HistogramMetricFamily(
            "modelserve_request_duration_seconds",
            "Inference request latency from the request's last byte to its response",
            labels=[*base, "protocol"],
        )
        for protocol, histogram in sorted(m.request_seconds.items()):
            histogram.add_to(latency, [*m.labels, protocol])
        inference = HistogramMetricFamily(
            "modelserve_inference_duration_seconds",
            "ONNX Runtime time per (batched) inference",
            labels=base,
        )
        m.inference_seconds.add_to(inference, list(m.labels))
        batch = HistogramMetricFamily(
            "modelserve_batch_size", "Rows per inference after dynamic batching", labels=base
        )
        m.batch_size.add_to(batch, list(m.labels))
        return [requests, latency, inference, batch]


class _Drift(Collector):
    """Exports the drift statistics: derived from request values, so only to trusted scrapes."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        drift = m.drift
        drift.fold()
        labels = ["model", "version", "input"]
        feature = [*labels, "feature"]
        rows = GaugeMetricFamily(
            "modelserve_input_rows", "Rows seen per input by the drift statistics", labels=labels
        )
        sums = GaugeMetricFamily(
            "modelserve_input_feature_sum", "Sum of each input feature", labels=feature
        )
        squares = GaugeMetricFamily(
            "modelserve_input_feature_sum_squares",
            "Sum of squares of each input feature",
            labels=feature,
        )
        means = GaugeMetricFamily(
            "modelserve_input_feature_mean", "Running mean of each input feature", labels=feature
        )
        variances = GaugeMetricFamily(
            "modelserve_input_feature_variance",
            "Running population variance of each input feature",
            labels=feature,
        )
        nonfinite = CounterMetricFamily(
            "modelserve_drift_nonfinite_values",
            "Input values left out of the drift statistics with their rows: NaN, infinite, or "
            "beyond ±1e140 (whose squares would overflow the sums)",
            labels=labels,
        )
        for name, count in drift.nonfinite.items():
            nonfinite.add_metric([*m.labels, name], count)
        for name, count in drift.rows.items():
            rows.add_metric([*m.labels, name], count)
            total, sq = drift.sums[name], drift.squares[name]
            mean = total / count
            variance = np.maximum(sq / count - mean * mean, 0.0)
            for index in range(total.shape[0]):
                key = [*m.labels, name, str(index)]
                sums.add_metric(key, float(total[index]))
                squares.add_metric(key, float(sq[index]))
                means.add_metric(key, float(mean[index]))
                variances.add_metric(key, float(variance[index]))
        return [rows, sums, squares, means, variances, nonfinite]


class Metrics:
    """The server's metrics in their own registry (no global state; tests can run several).

    `observe_*` must be called on the event loop thread.
    """

    def __init__(self, *, model: str, version: str, drift_max_features: int = 64) -> None:
        self.labels = (model, version)
        self.requests: dict[tuple[str, int], int] = {}
        self.requests_created: dict[tuple[str, int], float] = {}
        self.request_seconds: dict[str, Histogram] = {}
        self.inference_seconds = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(tuple(float(b) for b in BATCH_BUCKETS))
        self.drift = DriftStats(drift_max_features)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Hot(self))
        # Payload-derived families (see the module docstring); none when drift is off.
        self.payload_registry = CollectorRegistry(auto_describe=True)
        if drift_max_features:
            self.payload_registry.register(_Drift(self))
        labels = ["model", "version"]
        self._queue = Gauge(
            "modelserve_queue_depth", "Requests waiting for the model", labels,
            registry=self.registry,
        )  # fmt: skip
        self._inflight = Gauge(
            "modelserve_inflight_requests", "Inference requests received and not yet answered",
            labels, registry=self.registry,
        )  # fmt: skip
        self._ready = Gauge(
            "modelserve_ready",
            "1 when the server answers inference",
            labels,
            registry=self.registry,
        )
        self._load = Gauge(
            "modelserve_model_load_seconds",
            "Seconds spent fetching, loading and warming up the model",
            labels,
            registry=self.registry,
        )
        self._info = Info(
            "modelserve_model", "The served model's identity", labels, registry=self.registry
        )
        self._warmup_skipped = Gauge(
            "modelserve_warmup_skipped",
            "1 when the server turned Ready without a warm-up inference (none ran, or turned off)",
            labels,
            registry=self.registry,
        )
        self._fallback = Gauge(
            "modelserve_accelerator_fallback",
            "1 when the model runs on other execution providers than --accelerator asked for "
            "(the reason is in the model metadata's parameters.accelerator_fallback)",
            labels,
            registry=self.registry,
        )
        self._provider = Gauge(
            "modelserve_execution_provider_info",
            "The ONNX Runtime execution provider the model mainly runs on (always 1)",
            (*labels, "provider", "requested"),
            registry=self.registry,
        )
        self._batching = Gauge(
            "modelserve_batching_enabled",
            "1 while concurrent requests' rows are batched into one inference",
            labels,
            registry=self.registry,
        )

    def observe_request(self, protocol: str, code: int, seconds: float) -> None:
        """Count one answered inference request and its latency."""
        key = (protocol, code)
        count = self.requests.get(key)
        if count is None:
            self.count_request(protocol, code)  # a new series: its creation time is noted there
        else:  # the common case, inline: it runs for every request
            self.requests[key] = count + 1
        histogram = self.request_seconds.get(protocol)
        if histogram is None:
            histogram = self.request_seconds[protocol] = Histogram(LATENCY_BUCKETS)
        histogram.observe(seconds)

    def count_request(self, protocol: str, code: int) -> None:
        """Count one answer without timing it: a request refused before it was read in full
        (413, 431, 408, 401 at the head) has no latency that belongs in the histogram."""
        key = (protocol, code)
        count = self.requests.get(key)
        if count is None:
            self.requests_created[key] = time.time()
            count = 0
        self.requests[key] = count + 1

    def observe_batch(
        self, rows: int, seconds: float, feeds: Mapping[str, np.ndarray[Any, Any]]
    ) -> None:
        """Count one inference: its time, its rows, and its inputs for the drift statistics."""
        self.inference_seconds.observe(seconds)
        self.batch_size.observe(rows)
        self.drift.add(feeds)

    def track(self, *, queue_depth: Callable[[], float], inflight: Callable[[], float]) -> None:
        """Read live gauges from their owners at scrape time."""
        self._queue.labels(*self.labels).set_function(queue_depth)
        self._inflight.labels(*self.labels).set_function(inflight)

    def model_loaded(self, *, seconds: float, sha256: str, uri: str) -> None:
        """Record the load time and the served bytes' identity (an info metric)."""
        self._load.labels(*self.labels).set(seconds)
        self._info.labels(*self.labels).info(
            {"sha256": sha256, "uri": uri, "platform": "onnxruntime_onnx"}
        )

    def set_ready(self, ready: bool) -> None:
        """Mirror readiness, so a dashboard shows draining pods."""
        self._ready.labels(*self.labels).set(1 if ready else 0)

    def set_warmup_skipped(self, skipped: bool) -> None:
        """Say the model serves unproven: an alert can ask for warm-up samples."""
        self._warmup_skipped.labels(*self.labels).set(1 if skipped else 0)

    def set_placement(self, *, provider: str, requested: str, fallback: bool) -> None:
        """Where the model runs, and whether that is off the accelerator asked for: an alert on
        the gauge catches a GPU pod quietly serving from its CPU."""
        self._provider.labels(*self.labels, provider, requested).set(1)
        self._fallback.labels(*self.labels).set(1 if fallback else 0)

    def set_batching(self, enabled: bool) -> None:
        """Mirror whether rows are batched (set at start-up; cleared if a batch shows an output
        without the batch dimension)."""
        self._batching.labels(*self.labels).set(1 if enabled else 0)

    def exposition(self, *, payload: bool = False) -> bytes:
        """The text exposition format for a scrape (call on the loop thread); `payload` adds the
        families derived from request values, for a scrape trusted with them (off unless asked:
        forgetting it must not leak)."""
        public = generate_latest(self.registry)
        return public + generate_latest(self.payload_registry) if payload else public
