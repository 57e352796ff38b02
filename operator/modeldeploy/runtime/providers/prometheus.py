"""The prometheus provider: PromQL over the last interval against the user's Prometheus.

An optional bearer token comes from a Secret. Series must carry `namespace` and `revision`
labels (the standard pod-label relabeling of a PodMonitor gives them).
"""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from typing import Any, Final

from modeldeploy.api.spec import Analysis, PrometheusProvider
from modeldeploy.core.analysis import RevisionMetrics
from modeldeploy.core.analysis.promql import (
    Target,
    custom_query,
    scalar_result,
    window_from_results,
    window_queries,
)
from modeldeploy.runtime.kube import Kube

log = logging.getLogger(__name__)
QUERY_TIMEOUT: Final = 10.0


def query_prometheus(
    kube: Kube,
    namespace: str,
    analysis: Analysis,
    provider: PrometheusProvider,
    canary: str,
    stable: str | None,
) -> tuple[RevisionMetrics, RevisionMetrics | None] | None:
    """Both revisions over the last interval, or None when Prometheus could not answer."""
    token = None
    if provider.token_secret_ref:
        ref = provider.token_secret_ref
        token = kube.secret_value(namespace, ref.name, ref.key)
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
        out.append(
            RevisionMetrics(window_from_results(analysis.interval.seconds, *answers), custom)
        )
    return out[0], (out[1] if len(out) > 1 else None)


def _query(address: str, promql: str, token: str | None) -> dict[str, Any]:
    url = f"{address.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=QUERY_TIMEOUT) as response:
        answer: dict[str, Any] = json.load(response)
    return answer
