"""The statistical judge: the new revision against the stable one, over the same interval.

Fixed limits flap: a latency spike that hits both revisions at once (a noisy neighbour, a burst
of large inputs) fails a canary that did nothing wrong. Comparing both revisions over the same
interval cancels what they share, Kayenta style. A metric fails when three things hold:

1. the canary is worse with significance: one-sided p-value below alpha. The check runs up to
   two tests (error rate, latency), so alpha = (1 - confidence) / (number of tests), Bonferroni:
   two identical revisions then pass a whole check with probability at least `confidence`, which
   is what a user who writes `confidence: 0.95` expects of a check, not of each test in it;
2. by more than a tolerance (an effect size), so that at high volume a difference too small to
   matter, though "significant", does not roll a release back;
3. with at least `minRequests` requests on each side; otherwise there is nothing to compare.

Tests: error rate by a two-proportion test (`stats.proportion_greater`); latency by a
Mann-Whitney U rank test over the histogram buckets (`stats.rank_test_greater`). The rank test
compares whole distributions, so latency-p50, -p95 and -p99 share one test and one p-value
(their rows show each quantile's values); a regression confined to the far tail is caught by the
limits, not the rank test. Request rate and custom metrics have no distribution to test and are
judged by their limits alone.

The spec's limits stay guard rails: a canary beyond max or below min fails even when the stable
revision is just as bad. With too few stable requests (say, at weight 100) the limits alone
judge, and the result carries no stable value or p-value, so the record shows that no
comparison happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from modeldeploy.api.spec import MetricCheck
from modeldeploy.core.analysis.builtin import ERROR_RATE, LATENCY_QUANTILES, errors
from modeldeploy.core.analysis.revision_metrics import RevisionMetrics
from modeldeploy.core.analysis.stats import RankTest, proportion_greater, rank_test_greater
from modeldeploy.core.analysis.threshold import breach, judge_metric, too_few
from modeldeploy.core.analysis.verdict import (
    CheckOutcome,
    MetricOutcome,
    Verdict,
    format_limit,
    show,
)
from modeldeploy.core.analysis.window import Window, common_bounds

NO_EFFECT: Final = 0.5


@dataclass(frozen=True)
class Tolerances:
    """How much worse than stable a canary may be before a significant difference fails it.

    `error_rate_absolute` and `error_rate_relative`: the canary's error rate may exceed the
    stable one's by max(absolute, relative · stable rate). With the defaults, stable 0.1 %
    tolerates a canary up to 0.2 % (the absolute 0.1 point dominates), stable 2 % tolerates up
    to 2.5 % (25 % more errors). Smaller differences are noise or not worth a rollback; a
    5 % canary against a 0.1 % stable is far beyond either.

    `latency_superiority`: the chance that a random canary request is slower than a random
    stable one (ties half; 0.5 = no difference) must exceed this. 0.56 is Vargha and Delaney's
    threshold of a "small" effect for this measure (the rank-based counterpart of Cohen's
    d = 0.2). For log-normal latencies with a typical spread (standard deviation of log latency
    0.3 to 0.6), it is a median shift of roughly 7 % to 14 %; a canary 30 % slower scores 0.62
    to 0.73.
    """

    error_rate_absolute: float = 0.001
    error_rate_relative: float = 0.25
    latency_superiority: float = 0.56

    def error_rate(self, stable_rate: float) -> float:
        """The largest tolerated excess of the canary's error rate over `stable_rate`."""
        return max(self.error_rate_absolute, self.error_rate_relative * stable_rate)


DEFAULT_TOLERANCES: Final = Tolerances()


def _enough(window: Window | None, min_requests: int) -> Window | None:
    if window is None or window.total <= 0 or round(window.total) < min_requests:
        return None
    return window


def _compare_errors(
    check: MetricCheck, canary: Window, stable: Window, alpha: float, tol: Tolerances
) -> MetricOutcome:
    x1, n1 = errors(canary), canary.total
    x2, n2 = errors(stable), stable.total
    rate1, rate2 = x1 / n1, x2 / n2
    p = proportion_greater(x1, n1, x2, n2)
    allowed = tol.error_rate(rate2)
    worse = p < alpha and rate1 - rate2 > allowed
    compared = (
        f"{show(rate1, ERROR_RATE)} vs stable {show(rate2, ERROR_RATE)} "
        f"(p={p:.3g}, alpha {alpha:.3g}, difference {rate1 - rate2:.3g}, "
        f"tolerance {allowed:.3g})"
    )
    return _outcome(check, canary, worse, compared, rate1, rate2, p)


def _compare_latency(
    check: MetricCheck,
    canary: Window,
    stable: Window,
    test: RankTest,
    alpha: float,
    tol: Tolerances,
) -> MetricOutcome:
    value1, value2 = RevisionMetrics(canary).value(check), RevisionMetrics(stable).value(check)
    worse = test.p_value < alpha and test.superiority > tol.latency_superiority
    compared = (
        f"{show(value1, check.name)} vs stable {show(value2, check.name)} "
        f"(rank test p={test.p_value:.3g}, alpha {alpha:.3g}, "
        f"P(canary slower)={test.superiority:.3f}, tolerance {tol.latency_superiority:.3g})"
    )
    return _outcome(check, canary, worse, compared, value1, value2, test.p_value)


def _outcome(
    check: MetricCheck,
    canary: Window,
    worse: bool,
    compared: str,
    value1: float | None,
    value2: float | None,
    p: float,
) -> MetricOutcome:
    if value1 is None:
        verdict, reason = Verdict.INCONCLUSIVE, f"{check.name}: no data"
    elif (broken := breach(check, value1)) is not None:
        verdict, reason = Verdict.FAILED, f"{check.name} {broken}; {compared}"
    elif worse:
        verdict, reason = Verdict.FAILED, f"{check.name} worse than stable: {compared}"
    else:
        verdict, reason = Verdict.PASSED, f"{check.name} {compared}"
    return MetricOutcome(
        metric=check.name,
        verdict=verdict,
        reason=reason,
        canary_value=value1,
        stable_value=value2,
        limit=format_limit(check),
        p_value=p,
        requests=round(canary.total),
    )


def rank_test(canary: Window, stable: Window) -> RankTest:
    """The latency rank test on the bucket bounds both windows share."""
    bounds = common_bounds(canary, stable)
    return rank_test_greater(canary.rebucket(bounds).counts, stable.rebucket(bounds).counts)


def judge_statistical(
    checks: Sequence[MetricCheck],
    canary: RevisionMetrics,
    stable: RevisionMetrics | None,
    *,
    min_requests: int,
    confidence: float,
    tolerances: Tolerances = DEFAULT_TOLERANCES,
) -> CheckOutcome:
    """Every metric of the canary against the stable revision (see the module doc).

    >>> c = RevisionMetrics(Window(30, {"200": 950, "500": 50}))
    >>> s = RevisionMetrics(Window(30, {"200": 8991, "500": 9}))
    >>> check = MetricCheck(name="error-rate", max=0.1)
    >>> out = judge_statistical([check], c, s, min_requests=100, confidence=0.95)
    >>> out.verdict.value, out.results[0].stable_value
    ('Failed', 0.001)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence is between 0 and 1, got {confidence}")
    tests = {ERROR_RATE if c.name == ERROR_RATE else "latency" for c in checks if comparable(c)}
    alpha = (1.0 - confidence) / max(len(tests), 1)
    mine = _enough(canary.window, min_requests)
    theirs = _enough(None if stable is None else stable.window, min_requests)
    ranks: RankTest | None = None
    results: list[MetricOutcome] = []
    for check in checks:
        gated = too_few(check, canary.requests, min_requests)
        if gated is not None:
            results.append(gated)
        elif mine is None or theirs is None or not comparable(check):
            results.append(_limits_only(check, canary, stable, min_requests))
        elif check.name == ERROR_RATE:
            results.append(_compare_errors(check, mine, theirs, alpha, tolerances))
        else:
            ranks = ranks or rank_test(mine, theirs)
            results.append(_compare_latency(check, mine, theirs, ranks, alpha, tolerances))
    return CheckOutcome(tuple(results))


def comparable(check: MetricCheck) -> bool:
    """Whether the judge compares this metric with stable (built-in error rate and latency)."""
    return check.query is None and (check.name == ERROR_RATE or check.name in LATENCY_QUANTILES)


def _limits_only(
    check: MetricCheck, canary: RevisionMetrics, stable: RevisionMetrics | None, min_requests: int
) -> MetricOutcome:
    """Limits alone: request rate, custom metrics, or too little stable traffic to compare."""
    result = judge_metric(check, canary, min_requests)
    if comparable(check):
        if result.verdict is Verdict.INCONCLUSIVE:
            return result
        return replace(result, reason=f"{result.reason}; stable too quiet to compare")
    return replace(result, stable_value=None if stable is None else stable.value(check))
