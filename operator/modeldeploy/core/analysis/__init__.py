"""Rollout analysis, pure: metrics in, verdicts out. No Kubernetes, no network, no clock.

From two scrapes of each revision to a status record (the pods provider)::

    before = {rev: RevisionSample(t0, {pod: PodSample.parse(text) for pod, text in ...})}
    after = {rev: RevisionSample(t1, {...})}          # one interval later
    canary = RevisionMetrics(window_between(before[new], after[new]))
    stable = RevisionMetrics(window_between(before[old], after[old]))
    outcome = run_check(spec.rollout.analysis, canary, stable)
    status_check = outcome.to_status(time=now, step=step)   # an api.status.AnalysisCheck
    if outcome.verdict is Verdict.FAILED: ...               # outcome.summary() for the event

The prometheus provider builds the same `RevisionMetrics` from `promql.window_queries` answers
(`promql.window_from_results`) plus `promql.custom_query` values for custom metrics.
"""

from modeldeploy.core.analysis.builtin import builtin_value, error_rate, is_error, latency_quantile
from modeldeploy.core.analysis.check import run_check
from modeldeploy.core.analysis.revision_metrics import RevisionMetrics
from modeldeploy.core.analysis.samples import PodSample, RevisionSample, parse_exposition
from modeldeploy.core.analysis.statistical import Tolerances, judge_statistical
from modeldeploy.core.analysis.threshold import judge_threshold
from modeldeploy.core.analysis.verdict import CheckOutcome, MetricOutcome, Verdict, combine
from modeldeploy.core.analysis.window import Window, window_between

__all__ = [
    "CheckOutcome",
    "MetricOutcome",
    "PodSample",
    "RevisionMetrics",
    "RevisionSample",
    "Tolerances",
    "Verdict",
    "Window",
    "builtin_value",
    "combine",
    "error_rate",
    "is_error",
    "judge_statistical",
    "judge_threshold",
    "latency_quantile",
    "parse_exposition",
    "run_check",
    "window_between",
]
