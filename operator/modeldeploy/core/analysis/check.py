"""One analysis check: the judge the spec names, applied to both revisions' metrics."""

from __future__ import annotations

from modeldeploy.api.spec import Analysis, Judge
from modeldeploy.core.analysis.revision_metrics import RevisionMetrics
from modeldeploy.core.analysis.statistical import DEFAULT_TOLERANCES, Tolerances, judge_statistical
from modeldeploy.core.analysis.threshold import judge_threshold
from modeldeploy.core.analysis.verdict import CheckOutcome


def run_check(
    analysis: Analysis,
    canary: RevisionMetrics,
    stable: RevisionMetrics | None = None,
    *,
    tolerances: Tolerances = DEFAULT_TOLERANCES,
) -> CheckOutcome:
    """Judge the new revision's interval as `analysis` says (threshold or statistical).

    `stable` is the stable revision over the same interval; the threshold judge ignores it.
    """
    if analysis.judge == Judge.STATISTICAL:
        return judge_statistical(
            analysis.metrics,
            canary,
            stable,
            min_requests=analysis.min_requests,
            confidence=analysis.confidence,
            tolerances=tolerances,
        )
    return judge_threshold(analysis.metrics, canary, min_requests=analysis.min_requests)
