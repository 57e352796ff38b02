"""The threshold judge: each metric of the new revision within its fixed limits.

This is Flagger's and Argo Rollouts' model, with one difference their users ask for: an interval
in which the new revision answered fewer than `minRequests` requests, or a metric with no data,
is Inconclusive, never Failed, so quiet hours do not roll good releases back.
"""

from __future__ import annotations

from collections.abc import Sequence

from modeldeploy.api.spec import MetricCheck
from modeldeploy.core.analysis.revision_metrics import RevisionMetrics
from modeldeploy.core.analysis.verdict import (
    CheckOutcome,
    MetricOutcome,
    Verdict,
    format_limit,
    show,
)


def breach(check: MetricCheck, value: float) -> str | None:
    """How a value breaks the check's limits ("0.05 > max 0.01"), or None within them.

    Limits are inclusive: a value equal to max passes.

    >>> breach(MetricCheck(name="latency-p99", max=250), 412.3)
    '412.3ms > max 250ms'
    """
    if check.max is not None and value > check.max:
        return f"{show(value, check.name)} > max {show(check.max, check.name)}"
    if check.min is not None and value < check.min:
        return f"{show(value, check.name)} < min {show(check.min, check.name)}"
    return None


def too_few(check: MetricCheck, requests: int | None, min_requests: int) -> MetricOutcome | None:
    """The Inconclusive result for an interval below minRequests, or None when enough."""
    if min_requests <= 0 or (requests is not None and requests >= min_requests):
        return None
    served = "unknown" if requests is None else str(requests)
    return MetricOutcome(
        metric=check.name,
        verdict=Verdict.INCONCLUSIVE,
        reason=f"{check.name}: {served} requests < minRequests {min_requests}",
        limit=format_limit(check),
        requests=requests,
    )


def judge_metric(check: MetricCheck, canary: RevisionMetrics, min_requests: int) -> MetricOutcome:
    """One metric against its limits."""
    requests = canary.requests
    gated = too_few(check, requests, min_requests)
    if gated is not None:
        return gated
    value = canary.value(check)
    limit = format_limit(check)
    if value is None:
        return MetricOutcome(
            metric=check.name,
            verdict=Verdict.INCONCLUSIVE,
            reason=f"{check.name}: no data",
            limit=limit,
            requests=requests,
        )
    broken = breach(check, value)
    return MetricOutcome(
        metric=check.name,
        verdict=Verdict.PASSED if broken is None else Verdict.FAILED,
        reason=f"{check.name} {broken or show(value, check.name) + ' within ' + str(limit)}",
        canary_value=value,
        limit=limit,
        requests=requests,
    )


def judge_threshold(
    checks: Sequence[MetricCheck], canary: RevisionMetrics, *, min_requests: int
) -> CheckOutcome:
    """Every metric of the new revision against its limits.

    >>> from modeldeploy.core.analysis.window import Window
    >>> canary = RevisionMetrics(Window(30, {"200": 950, "500": 50}))
    >>> checks = [MetricCheck(name="error-rate", max=0.01)]
    >>> judge_threshold(checks, canary, min_requests=100).summary()
    'Failed: error-rate 0.05 > max 0.01'
    """
    return CheckOutcome(tuple(judge_metric(c, canary, min_requests) for c in checks))
