"""Analysis input from the cluster: the metrics providers' I/O (the judging is pure, analysis/).

- pods: every ready pod of a revision is scraped through the API server's pod proxy (works on a
  bare cluster, no Prometheus needed). A window needs two scrapes an interval apart, so the
  previous scrape of each revision is kept in memory; after an operator restart the first
  interval only primes it, and the rollout (whose state is in the status) simply waits one
  interval longer for its next check.
- prometheus: PromQL over the last interval against the user's Prometheus, with an optional
  bearer token from a Secret. Series must carry `namespace` and `revision` labels (the
  standard pod-label relabeling of a PodMonitor gives them).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modeldeploy.api.durations import parse_duration
from modeldeploy.api.spec import Analysis, PrometheusProvider
from modeldeploy.api.status import AnalysisCheck
from modeldeploy.core.analysis import (
    PodSample,
    RevisionMetrics,
    RevisionSample,
    run_check,
    window_between,
)
from modeldeploy.core.analysis.promql import (
    Target,
    custom_query,
    scalar_result,
    window_from_results,
    window_queries,
)
from modeldeploy.core.naming import HTTP_PORT, label_selector, revision_selector
from modeldeploy.runtime.errors import KubeError
from modeldeploy.runtime.kube import Kube

log = logging.getLogger(__name__)
QUERY_TIMEOUT = 10.0


@dataclass
class Collector:
    """Collects one analysis check for a canary (against stable) when the rollout asks."""

    kube: Kube
    _scrapes: dict[tuple[str, str], RevisionSample] = field(default_factory=dict)

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
        if analysis.provider.prometheus is not None:
            metrics = self._prometheus(namespace, analysis, analysis.provider.prometheus,
                                       canary, stable)  # fmt: skip
        else:
            metrics = self._pods(namespace, owner, analysis, canary, stable)
        if metrics is None:
            return None
        canary_metrics, stable_metrics = metrics
        return run_check(analysis, canary_metrics, stable_metrics).to_status(time=now, step=step)

    # --- pods ---------------------------------------------------------------------------

    def _pods(
        self, namespace: str, owner: str, analysis: Analysis, canary: str, stable: str | None
    ) -> tuple[RevisionMetrics, RevisionMetrics | None] | None:
        interval = parse_duration(analysis.interval)
        windows: dict[str, RevisionMetrics] = {}
        for revision in filter(None, (canary, stable)):
            key = (namespace, revision)
            before = self._scrapes.get(key)
            if before is not None and time.monotonic() - before.time < 0.8 * interval:
                return None  # too early for a full window (an event woke us before the timer)
            after = self._scrape(namespace, owner, revision)
            self._scrapes[key] = after
            if before is None:
                continue
            windows[revision] = RevisionMetrics(window_between(before, after))
        if canary not in windows:
            return None
        return windows[canary], windows.get(stable or "")

    def _scrape(self, namespace: str, owner: str, revision: str) -> RevisionSample:
        selector = label_selector(revision_selector(owner, revision))
        pods: dict[str, PodSample] = {}
        for pod in self.kube.ready_pods(namespace, selector):
            try:
                pods[pod] = PodSample.parse(
                    self.kube.pod_proxy_get(namespace, pod, HTTP_PORT, "metrics")
                )
            except (KubeError, ValueError) as exc:  # one bad pod must not sink the check
                log.warning("scraping %s/%s: %s", namespace, pod, exc)
        return RevisionSample(time.monotonic(), pods)

    def forget_owner(self, namespace: str, owner: str) -> None:
        """Drop the scrapes of a deleted ModelDeployment's revisions (NAME-<hash>)."""
        for key in [k for k in self._scrapes if k[0] == namespace and
                    k[1].startswith(f"{owner}-")]:  # fmt: skip
            del self._scrapes[key]

    # --- prometheus ---------------------------------------------------------------------

    def _prometheus(
        self,
        namespace: str,
        analysis: Analysis,
        provider: PrometheusProvider,
        canary: str,
        stable: str | None,
    ) -> tuple[RevisionMetrics, RevisionMetrics | None] | None:
        token = None
        if provider.token_secret_ref:
            ref = provider.token_secret_ref
            token = self.kube.secret_value(namespace, ref.name, ref.key)
        seconds = parse_duration(analysis.interval)
        out: list[RevisionMetrics] = []
        for revision in filter(None, (canary, stable)):
            target = Target(namespace, revision, analysis.interval)
            queries = window_queries(target)
            try:
                wanted = (queries.requests, queries.buckets, queries.latency_sum)
                answers = [_query(provider.address, q, token) for q in wanted]
                custom = {
                    m.name: scalar_result(_query(provider.address,
                                                 custom_query(m.query, target), token))
                    for m in analysis.metrics
                    if m.query
                }  # fmt: skip
            except (OSError, ValueError) as exc:
                log.warning("querying Prometheus at %s: %s", provider.address, exc)
                return None
            out.append(RevisionMetrics(window_from_results(seconds, *answers), custom))
        return out[0], (out[1] if len(out) > 1 else None)


def _query(address: str, promql: str, token: str | None) -> dict[str, Any]:
    url = f"{address.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=QUERY_TIMEOUT) as response:
        answer: dict[str, Any] = json.load(response)
    return answer
