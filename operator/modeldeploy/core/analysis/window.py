"""What a revision served in one analysis interval: deltas between two scrapes.

Counters only grow while a process lives, so the traffic of an interval is `after - before`,
per pod, summed over the revision's pods. Two things make that less simple than it sounds:

- Restarts. A restarted container starts its counters at zero. A pod whose counter went down,
  whose series vanished, or whose counters' `_created` timestamp changed has restarted since
  the last scrape; everything it counted since then happened inside the interval, so its delta
  is its whole current value (Prometheus' `increase()` makes the same assumption).
- Pods that come and go. A pod seen for the first time contributes nothing until its next
  scrape: its counters hold traffic from before the interval too, and the honest way to split
  it would need its start time. A pod that vanished (scaled down, evicted) contributes nothing
  either: what it served after the last scrape was never observed. Both only lower the request
  count, which at worst makes a check Inconclusive, never Failed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from modeldeploy.core.analysis.samples import (
    LATENCY_BUCKET,
    LATENCY_SUM,
    REQUESTS_TOTAL,
    PodSample,
    RevisionSample,
    SeriesKey,
)


@dataclass(frozen=True)
class Window:
    """A revision's traffic over one interval.

    `requests` counts answered requests by HTTP status code. The latency histogram is kept
    per bucket (not cumulative, unlike Prometheus): `counts[i]` requests took at most
    `bounds[i]` seconds and more than `bounds[i-1]`; the last bound is always +Inf.
    Counts are floats because Prometheus' `increase()` extrapolates; from the pods provider
    they are whole numbers.
    """

    seconds: float
    requests: Mapping[str, float] = field(default_factory=dict)
    bounds: tuple[float, ...] = (math.inf,)
    counts: tuple[float, ...] = (0.0,)
    latency_sum: float = 0.0
    pods: int = 0
    """Pods that contributed (seen in both scrapes)."""

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.counts) or not self.bounds:
            raise ValueError("a histogram needs one count per bucket bound")
        if any(b >= c for b, c in zip(self.bounds, self.bounds[1:], strict=False)):
            raise ValueError(f"bucket bounds must increase: {self.bounds}")
        if self.bounds[-1] != math.inf:
            raise ValueError("the last bucket bound must be +Inf")

    @property
    def total(self) -> float:
        """Requests answered in the interval, any status code."""
        return sum(self.requests.values())

    @property
    def observations(self) -> float:
        """Requests in the latency histogram (equals `total` for modelserve)."""
        return sum(self.counts)

    @classmethod
    def from_cumulative(
        cls,
        seconds: float,
        requests: Mapping[str, float],
        cumulative: Mapping[float, float],
        latency_sum: float = 0.0,
        pods: int = 0,
    ) -> Window:
        """Build from Prometheus-style cumulative buckets {le: count of requests <= le}.

        Cumulative counts that dip (float noise in PromQL results) are lifted to the running
        maximum, as Prometheus' histogram_quantile does; a missing +Inf bucket gets the
        largest count.

        >>> w = Window.from_cumulative(30, {"200": 4}, {0.1: 1, 0.2: 3, math.inf: 4})
        >>> w.bounds, w.counts
        ((0.1, 0.2, inf), (1.0, 2.0, 1.0))
        """
        items = sorted(cumulative.items())
        if not items or items[-1][0] != math.inf:
            items.append((math.inf, max((c for _, c in items), default=0.0)))
        bounds: list[float] = []
        counts: list[float] = []
        running = 0.0
        for le, count in items:
            level = max(running, float(count), 0.0)
            bounds.append(le)
            counts.append(level - running)
            running = level
        return cls(
            seconds=seconds,
            requests=dict(requests),
            bounds=tuple(bounds),
            counts=tuple(counts),
            latency_sum=latency_sum,
            pods=pods,
        )

    def rebucket(self, bounds: Iterable[float]) -> Window:
        """The same window on coarser buckets (each new bound must be one of `self.bounds`).

        Two revisions built from different images may have different bucket layouts; they are
        compared on the bounds they share, where both cumulative counts are exact.

        >>> w = Window(1, bounds=(0.1, 0.2, 0.3, math.inf), counts=(1, 2, 3, 4))
        >>> w.rebucket([0.2, math.inf]).counts
        (3.0, 7.0)
        """
        wanted = sorted(set(bounds) | {math.inf})
        missing = set(wanted) - set(self.bounds)
        if missing:
            raise ValueError(f"cannot split buckets at {sorted(missing)}")
        merged: list[float] = []
        acc = 0.0
        targets = iter(wanted)
        target = next(targets)
        for bound, count in zip(self.bounds, self.counts, strict=True):
            acc += count
            if bound == target:
                merged.append(acc)
                acc = 0.0
                target = next(targets, math.inf)
        return Window(
            seconds=self.seconds,
            requests=self.requests,
            bounds=tuple(wanted),
            counts=tuple(merged),
            latency_sum=self.latency_sum,
            pods=self.pods,
        )


def common_bounds(*windows: Window) -> tuple[float, ...]:
    """Bucket bounds every window has (always at least +Inf)."""
    shared = set(windows[0].bounds) if windows else {math.inf}
    for w in windows[1:]:
        shared &= set(w.bounds)
    return tuple(sorted(shared | {math.inf}))


def restarted(before: PodSample, after: PodSample) -> bool:
    """Whether the pod's process restarted between two scrapes.

    A counter that went down or vanished, or a counter's creation timestamp that changed.
    """
    then, now = before.counters(), after.counters()
    if any(key not in now or now[key] < value for key, value in then.items()):
        return True
    created_then, created_now = before.created(), after.created()
    return any(created_now.get(k, v) != v for k, v in created_then.items())


def pod_delta(before: PodSample | None, after: PodSample) -> dict[SeriesKey, float]:
    """Per-series growth of one pod's counters between two scrapes; never negative.

    First sighting (`before` is None): nothing. After a restart: the whole current value.
    A series that first appears (a status code answered for the first time) counts in full:
    prometheus-client creates a series on its first increment.
    """
    if before is None:
        return {}
    now = after.counters()
    if restarted(before, after):
        return now
    then = before.counters()
    return {key: value - then.get(key, 0.0) for key, value in now.items()}


def window_between(before: RevisionSample, after: RevisionSample) -> Window:
    """A revision's traffic between two scrapes of all its pods.

    Requests are summed by status code over pods and over every other label (protocol, model,
    version); latency buckets by `le`. Bucket bounds that not every contributing pod has are
    dropped (pods of one revision run one image, so this only guards against a mixed one).
    """
    seconds = after.time - before.time
    if seconds <= 0:
        raise ValueError(f"the second scrape must come after the first ({seconds}s apart)")
    requests: dict[str, float] = defaultdict(float)
    cumulative: dict[float, float] = defaultdict(float)
    shared: set[float] | None = None
    latency_sum = 0.0
    pods = 0
    for pod, sample in after.pods.items():
        previous = before.pods.get(pod)
        if previous is None:
            continue
        pods += 1
        les: set[float] = set()
        for (name, labels), value in pod_delta(previous, sample).items():
            tags = dict(labels)
            if name == REQUESTS_TOTAL:
                requests[tags.get("code", "")] += value
            elif name == LATENCY_BUCKET and "le" in tags:
                le = float(tags["le"])
                les.add(le)
                cumulative[le] += value
            elif name == LATENCY_SUM:
                latency_sum += value
        if les:
            shared = les if shared is None else shared & les
    kept = {le: c for le, c in cumulative.items() if shared is not None and le in shared}
    return Window.from_cumulative(seconds, requests, kept, latency_sum, pods)
