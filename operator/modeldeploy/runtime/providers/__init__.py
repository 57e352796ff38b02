"""Analysis input from the cluster: the metrics providers' I/O (the judging is pure,
modeldeploy.core.analysis).

One module per provider the spec can name (`spec.rollout.analysis.provider`): `pods` scrapes
every ready pod of a revision through the API server's pod proxy (works on a bare cluster, no
Prometheus needed); `prometheus` asks the user's Prometheus. Both hand the judges the same
`RevisionMetrics`. Beside them, `digests` reads which model bytes each revision's pods serve,
and `signatures` what inputs and outputs they take and give (the signature gate's input).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from modeldeploy.api.spec import Analysis
from modeldeploy.api.status import AnalysisCheck
from modeldeploy.core.analysis import RevisionMetrics, run_check
from modeldeploy.runtime.kube import Kube
from modeldeploy.runtime.providers.digests import DigestReader
from modeldeploy.runtime.providers.pods import PodScrapes
from modeldeploy.runtime.providers.prometheus import query_prometheus
from modeldeploy.runtime.providers.signatures import SignatureReader


@dataclass
class MetricsProviders:
    """Collects one analysis check for a canary (against stable) when the rollout asks."""

    kube: Kube
    pods: PodScrapes = field(default_factory=PodScrapes)
    digests: DigestReader = field(default_factory=DigestReader)
    signatures: SignatureReader = field(default_factory=SignatureReader)

    def check(
        self,
        namespace: str,
        owner: str,
        analysis: Analysis,
        canary: str,
        stable: str | None,
        step: int,
        now: datetime,
    ) -> AnalysisCheck | None:
        """One check of `canary` over the last interval, or None while a window is not ready."""
        metrics: tuple[RevisionMetrics, RevisionMetrics | None] | None
        if analysis.provider.prometheus is not None:
            metrics = query_prometheus(self.kube, namespace, analysis,
                                       analysis.provider.prometheus, canary, stable)  # fmt: skip
        else:
            metrics = self.pods.windows(self.kube, namespace, owner, analysis, canary, stable)
        if metrics is None:
            return None
        canary_metrics, stable_metrics = metrics
        return run_check(analysis, canary_metrics, stable_metrics).to_status(time=now, step=step)

    def forget_owner(self, namespace: str, owner: str) -> None:
        """Drop what is kept in memory for a deleted ModelDeployment."""
        self.pods.forget_owner(namespace, owner)
        self.digests.forget_owner(namespace, owner)
        self.signatures.forget_owner(namespace, owner)


__all__ = ["MetricsProviders"]
