"""Results of an analysis check, as plain data that converts to the status models.

Every result says what was measured on both revisions, against which limit, and why it got its
verdict (`reason`), so a rollback event can name the failing metric and by how much.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from modeldeploy.api.spec import MetricCheck
from modeldeploy.api.status import AnalysisCheck, MetricResult, Verdict
from modeldeploy.core.analysis.builtin import LATENCY_QUANTILES, REQUEST_RATE

__all__ = [
    "CheckOutcome",
    "MetricOutcome",
    "Verdict",
    "combine",
    "format_limit",
    "show",
    "unit",
]


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """A check's verdict from its metrics': Failed if any failed, else Inconclusive if any was,
    else Passed. No metrics at all is Inconclusive (no evidence is not a pass).

    >>> combine([Verdict.PASSED, Verdict.INCONCLUSIVE])
    <Verdict.INCONCLUSIVE: 'Inconclusive'>
    """
    seen = set(verdicts)
    if not seen:
        return Verdict.INCONCLUSIVE
    if Verdict.FAILED in seen:
        return Verdict.FAILED
    if Verdict.INCONCLUSIVE in seen:
        return Verdict.INCONCLUSIVE
    return Verdict.PASSED


def unit(metric: str) -> str:
    """The unit suffix a metric's values and limits are shown with."""
    if metric in LATENCY_QUANTILES:
        return "ms"
    if metric == REQUEST_RATE:
        return "/s"
    return ""


def show(value: float | None, metric: str) -> str:
    """A value for people: 4 significant digits and the metric's unit.

    >>> show(0.012345, "error-rate"), show(412.31, "latency-p99"), show(None, "x")
    ('0.01235', '412.3ms', 'no data')
    """
    if value is None:
        return "no data"
    return f"{value:.4g}{unit(metric)}"


def format_limit(check: MetricCheck) -> str | None:
    """The limit as the spec writes it, e.g. "max 250ms" or "min 5/s, max 100/s".

    >>> format_limit(MetricCheck(name="error-rate", max=0.01))
    'max 0.01'
    """
    parts = [
        f"{word} {bound:g}{unit(check.name)}"
        for word, bound in (("min", check.min), ("max", check.max))
        if bound is not None
    ]
    return ", ".join(parts) or None


def _finite(value: float | None) -> float | None:
    """Status is JSON: NaN and infinities cannot be written, so they show as no value."""
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class MetricOutcome:
    """One metric's result in one check."""

    metric: str
    verdict: Verdict
    reason: str
    """A sentence for events and conditions: what was measured against what."""
    canary_value: float | None = None
    stable_value: float | None = None
    limit: str | None = None
    p_value: float | None = None
    requests: int | None = None
    """Requests the canary answered in the interval."""

    def to_status(self) -> MetricResult:
        """The status model (camelCase keys on the wire)."""
        return MetricResult(
            metric=self.metric,
            verdict=self.verdict,
            canary_value=_finite(self.canary_value),
            stable_value=_finite(self.stable_value),
            limit=self.limit[:64] if self.limit else None,
            p_value=None if self.p_value is None else min(max(self.p_value, 0.0), 1.0),
            requests=self.requests,
        )


@dataclass(frozen=True)
class CheckOutcome:
    """All metrics of one check and their combined verdict."""

    results: tuple[MetricOutcome, ...]

    @property
    def verdict(self) -> Verdict:
        return combine(r.verdict for r in self.results)

    def failed(self) -> tuple[MetricOutcome, ...]:
        """The metrics that failed (what a rollback event names)."""
        return tuple(r for r in self.results if r.verdict is Verdict.FAILED)

    def summary(self) -> str:
        """One line for an event or condition message: the verdict and the reasons behind it.

        Failed checks list their failed metrics; Inconclusive ones the metrics without data.
        """
        verdict = self.verdict
        if verdict is Verdict.PASSED:
            return "Passed: " + "; ".join(r.reason for r in self.results)
        shown = [r for r in self.results if r.verdict is verdict]
        return f"{verdict.value}: " + "; ".join(r.reason for r in shown)

    def to_status(self, *, time: datetime, step: int) -> AnalysisCheck:
        """The status model for `status.analysis.checks`."""
        return AnalysisCheck(
            time=time,
            step=step,
            verdict=self.verdict,
            results=[r.to_status() for r in self.results[:16]],
        )
