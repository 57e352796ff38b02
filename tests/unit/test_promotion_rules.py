"""Nothing is promoted on silence.

BlueGreen and ABTest promote after `analysis.iterations` checks that passed on real traffic:
the candidate answered at least `minRequests` requests (and at least one) in each. A check
without that traffic (Inconclusive, or Passed on nothing with minRequests 0) does not count,
and the rollout waits for traffic to the preview Service or for `modeldeploy promote`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from modeldeploy.core.plan import target_revision
from modeldeploy.core.settings import Settings
from rolloutkit import GATEWAY, OWNER, RATIO, Cluster, spec_for


def rolling(strategy: str, min_requests: int | None = None) -> tuple[Cluster, str]:
    routing = GATEWAY if strategy == "ABTest" else RATIO
    spec = spec_for("v1", strategy, routing, 2, [50])
    cluster = Cluster(spec)
    cluster.reconcile()
    cluster.reconcile()
    cluster.spec = spec_for("v2", strategy, routing, 2, [50])
    if min_requests is not None:
        analysis = cluster.spec.rollout.analysis.model_copy(update={"min_requests": min_requests})
        rollout = cluster.spec.rollout.model_copy(update={"analysis": analysis})
        cluster.spec = cluster.spec.model_copy(update={"rollout": rollout})
    assert cluster.spec.rollout.match is None or cluster.spec.rollout.match[0].headers
    candidate = target_revision(OWNER, cluster.spec, Settings())
    cluster.reconcile()
    cluster.reconcile()
    return cluster, candidate


def progressing(cluster: Cluster) -> tuple[str, str]:
    cond = next(c for c in cluster.status.conditions if c.type == "Progressing")
    return cond.reason, cond.message


@pytest.mark.parametrize("strategy", ["BlueGreen", "ABTest"])
def test_quiet_checks_never_promote(strategy: str) -> None:
    cluster, candidate = rolling(strategy)
    for _ in range(30):  # far more than `iterations` (2) quiet checks
        cluster.now += timedelta(seconds=30)
        cluster.reconcile("Inconclusive", requests=0)
        assert cluster.status.canary_revision is not None
        assert cluster.status.canary_revision.name == candidate
    reason, message = progressing(cluster)
    assert reason == "AwaitingVerification"
    assert "modeldeploy promote" in message
    assert "http://fraud-canary.ml.svc/v2/models/fraud" in message  # where to send traffic
    cluster.reconcile(action="promote")
    cluster.reconcile()
    assert cluster.status.stable_revision.name == candidate


@pytest.mark.parametrize("strategy", ["BlueGreen", "ABTest"])
def test_a_pass_on_no_requests_is_not_a_pass(strategy: str) -> None:
    """minRequests 0 lets a check pass on whatever came; nothing at all is still silence."""
    cluster, candidate = rolling(strategy, min_requests=0)
    for _ in range(5):
        cluster.now += timedelta(seconds=30)
        cluster.reconcile("Passed", requests=0)
    assert cluster.status.canary_revision.name == candidate
    assert cluster.status.analysis.passed_checks == 0


@pytest.mark.parametrize("strategy", ["BlueGreen", "ABTest"])
def test_checks_on_real_traffic_promote(strategy: str) -> None:
    cluster, candidate = rolling(strategy)
    cluster.now += timedelta(seconds=30)
    cluster.reconcile("Passed", requests=150)
    cluster.now += timedelta(seconds=30)
    cluster.reconcile("Inconclusive", requests=3)  # a quiet interval in between: not counted
    assert cluster.status.canary_revision.name == candidate
    cluster.now += timedelta(seconds=30)
    cluster.reconcile("Passed", requests=120)
    for _ in range(3):
        cluster.reconcile()
    assert cluster.status.stable_revision.name == candidate
    promoted = [e.message for e in cluster.last.events if e.reason == "Promoted"] or [
        h.message for h in cluster.status.history if h.event == "Promoted"
    ]
    assert "2 checks passed on real traffic" in promoted[-1]
