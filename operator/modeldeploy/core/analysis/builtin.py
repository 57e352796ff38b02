"""The built-in metrics, computed from one revision's `Window`.

Units are the ones a user writes limits in (see `MetricCheck.max`): error rate as a ratio,
latency in milliseconds, request rate in requests per second.

What counts as an error: 5xx answers and 429. A 4xx is the client's fault (modelserve answers
malformed input with a 400 that says why, never a 500), so a canary must not be rolled back
because a client sent bad tensors. 429 (concurrency limit reached) is the exception: the
request was valid and the revision could not serve it, which is what a slower or leakier model
looks like under the same per-pod load. 503 (not ready, draining, queue full) is a 5xx and
counts too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

from modeldeploy.core.analysis.window import Window

ERROR_RATE: Final = "error-rate"
REQUEST_RATE: Final = "request-rate"
LATENCY_QUANTILES: Final = {"latency-p50": 0.5, "latency-p95": 0.95, "latency-p99": 0.99}
BUILTIN_NAMES: Final = (ERROR_RATE, *LATENCY_QUANTILES, REQUEST_RATE)


def is_error(code: str) -> bool:
    """Whether an HTTP status code is the revision's failure (5xx and 429; see module doc).

    >>> [is_error(c) for c in ("200", "400", "429", "500", "503")]
    [False, False, True, True, True]
    """
    return code == "429" or code.startswith("5")


def errors(window: Window, classify: Callable[[str], bool] = is_error) -> float:
    """Requests in the window answered with an error code."""
    return sum(count for code, count in window.requests.items() if classify(code))


def error_rate(window: Window, classify: Callable[[str], bool] = is_error) -> float | None:
    """Errors per request; None without requests (no data is not a 0 % error rate).

    >>> error_rate(Window(30, {"200": 990, "500": 7, "429": 2, "404": 1}))
    0.009
    """
    total = window.total
    return errors(window, classify) / total if total > 0 else None


def request_rate(window: Window) -> float:
    """Requests per second over the window.

    >>> request_rate(Window(30, {"200": 600}))
    20.0
    """
    return window.total / window.seconds


def latency_quantile(window: Window, q: float) -> float | None:
    """The q-quantile of latency in seconds, interpolated inside its bucket like PromQL's
    histogram_quantile; None when the histogram is empty.

    The rank q·n falls in the first bucket whose cumulative count reaches it; inside it,
    requests are assumed spread evenly between the bucket's bounds. The lowest bucket starts at
    0; a rank in the +Inf bucket returns the largest finite bound (as Prometheus does: the
    true value is only known to be above it). Unlike Prometheus, empty buckets are skipped, so
    q = 0 gives the lower edge of the first occupied bucket instead of NaN.

    Worked example: 100 requests, 60 in (0, 10 ms], 30 in (10, 20 ms], 10 in (20 ms, +Inf).
    p50: rank 50 in the first bucket → 0 + 10 ms · 50/60 = 8.33 ms.
    p75: rank 75, 15 into the second bucket → 10 + 10 · 15/30 = 15 ms.
    p99: rank 99 in the +Inf bucket → 20 ms.

    >>> w = Window(1, bounds=(0.01, 0.02, math.inf), counts=(60, 30, 10))
    >>> [round(latency_quantile(w, q) * 1000, 2) for q in (0.5, 0.75, 0.99)]
    [8.33, 15.0, 20.0]
    """
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile is between 0 and 1, got {q}")
    total = window.observations
    if total <= 0:
        return None
    rank = q * total
    below = 0.0
    lower = 0.0
    finite = [b for b in window.bounds if b != math.inf]
    for bound, count in zip(window.bounds, window.counts, strict=True):
        if count > 0 and below + count >= rank:
            if bound == math.inf:
                return finite[-1] if finite else None
            # Clamped: `below + count >= rank` can hold after rounding while `rank - below`
            # still exceeds `count` by an ulp, which would put the quantile past the bucket.
            return lower + (bound - lower) * min(max(rank - below, 0.0) / count, 1.0)
        below += count
        lower = bound
    return finite[-1] if finite else None  # float rounding left the rank just past the end


def builtin_value(name: str, window: Window) -> float | None:
    """A built-in metric in the units of its limits; None when the window has no data.

    >>> w = Window(10, {"200": 99, "500": 1}, bounds=(0.25, math.inf), counts=(100, 0))
    >>> [builtin_value(n, w) for n in ("error-rate", "latency-p50", "request-rate")]
    [0.01, 125.0, 10.0]
    """
    if name == ERROR_RATE:
        return error_rate(window)
    if name == REQUEST_RATE:
        return request_rate(window)
    if name in LATENCY_QUANTILES:
        seconds = latency_quantile(window, LATENCY_QUANTILES[name])
        return None if seconds is None else seconds * 1000.0
    raise ValueError(f"{name!r} is not a built-in metric ({', '.join(BUILTIN_NAMES)})")
