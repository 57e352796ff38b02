"""Scrapes of the serving pods, parsed into plain numbers.

The pods provider fetches each pod's `/metrics` (Prometheus text exposition) through the API
server's pod proxy. This module turns that text into a `PodSample`: the few series rollout
analysis needs, and nothing else, so a sample is small enough to keep between two scrapes.
Parsing uses prometheus-client's own parser, the counterpart of the library that wrote the
text, so label escaping, `+Inf` and exponent formats are read exactly as written.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

LabelSet = tuple[tuple[str, str], ...]
"""Labels of one series, sorted by name: hashable and independent of exposition order."""

SeriesKey = tuple[str, LabelSet]
"""One series: the sample name (with its `_total`/`_bucket`/... suffix) and its labels."""

REQUESTS: Final = "modelserve_requests"
"""Counter of answered inference requests, labelled by HTTP status `code` (see modelserve)."""
LATENCY: Final = "modelserve_request_duration_seconds"
"""Histogram of inference request latency, in seconds (see modelserve)."""

REQUESTS_TOTAL: Final = f"{REQUESTS}_total"
LATENCY_BUCKET: Final = f"{LATENCY}_bucket"
LATENCY_SUM: Final = f"{LATENCY}_sum"
LATENCY_COUNT: Final = f"{LATENCY}_count"
CREATED_SUFFIX: Final = "_created"

COUNTER_SAMPLES: Final = frozenset({REQUESTS_TOTAL, LATENCY_BUCKET, LATENCY_SUM, LATENCY_COUNT})
"""Samples that only ever grow while a process lives: deltas of these are traffic."""
CREATED_SAMPLES: Final = frozenset({f"{REQUESTS}{CREATED_SUFFIX}", f"{LATENCY}{CREATED_SUFFIX}"})
"""Creation timestamps prometheus-client writes beside each counter: a changed one means the
process restarted even when its counters already grew past their old values."""
TRACKED_SAMPLES: Final = COUNTER_SAMPLES | CREATED_SAMPLES


def label_set(labels: Mapping[str, str]) -> LabelSet:
    """Sorted, hashable labels.

    >>> label_set({"code": "200", "model": "m"})
    (('code', '200'), ('model', 'm'))
    """
    return tuple(sorted(labels.items()))


def parse_exposition(
    text: str, *, samples: Collection[str] | None = None
) -> dict[SeriesKey, float]:
    """Every sample of a text exposition as {(name, labels): value}.

    `samples` keeps only those sample names (all when None). The same series written twice (a
    broken exporter) keeps its last value, as Prometheus does. Raises ValueError on text that is
    not the exposition format, so a caller can report "pod X: unreadable metrics".

    >>> parse_exposition('x_total{a="1"} 3\\n')
    {('x_total', (('a', '1'),)): 3.0}
    """
    series: dict[SeriesKey, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if samples is None or sample.name in samples:
                    series[(sample.name, label_set(sample.labels))] = float(sample.value)
    except ValueError as error:
        raise ValueError(f"not Prometheus text exposition: {error}") from error
    return series


@dataclass(frozen=True)
class PodSample:
    """One scrape of one serving pod: only the series analysis reads (see `TRACKED_SAMPLES`)."""

    series: Mapping[SeriesKey, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> PodSample:
        """Read a pod's `/metrics` text; ValueError when it is not the exposition format."""
        return cls(parse_exposition(text, samples=TRACKED_SAMPLES))

    def counters(self) -> dict[SeriesKey, float]:
        """The monotonic series (requests by code, latency buckets, sum and count)."""
        return {k: v for k, v in self.series.items() if k[0] in COUNTER_SAMPLES}

    def created(self) -> dict[SeriesKey, float]:
        """Creation timestamps of the counters, where the exporter writes them."""
        return {k: v for k, v in self.series.items() if k[0] in CREATED_SAMPLES}

    def to_json(self) -> list[list[object]]:
        """A JSON-able form ([name, {labels}, value] rows), to keep a scrape across restarts."""
        return [[name, dict(labels), value] for (name, labels), value in self.series.items()]

    @classmethod
    def from_json(cls, rows: Iterable[list[object]]) -> PodSample:
        """Inverse of `to_json`; ValueError on rows of the wrong shape."""
        series: dict[SeriesKey, float] = {}
        for row in rows:
            match row:
                case [str(name), dict(labels), int() | float() as value]:
                    series[(name, label_set({str(k): str(v) for k, v in labels.items()}))] = float(
                        value
                    )
                case _:
                    raise ValueError(f"not a [name, labels, value] row: {row!r}")
        return cls(series)


@dataclass(frozen=True)
class RevisionSample:
    """One scrape of every pod of a revision, taken at `time` (seconds on any one clock).

    Pods are keyed by whatever identifies one pod for its life (its name or UID): a container
    restart inside the same pod keeps the key and is caught by reset detection in
    `window_between`.
    """

    time: float
    pods: Mapping[str, PodSample] = field(default_factory=dict)
