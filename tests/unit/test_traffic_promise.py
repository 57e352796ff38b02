"""The traffic a revision really gets is what the status says, for every strategy and router.

The share is read back from what the plan writes, never from the plan's own arithmetic: the
entry Service's selector (which revisions' pods clients reach), the HTTPRoute's weights, and the
replica counts. Under replicaRatio, kube-proxy spreads requests evenly over the selected pods,
so a revision's share is its pods over all selected pods; the documented tolerance is the
granularity of one pod (core/traffic/replica_ratio.py). Under gatewayAPI the route decides.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from modeldeploy.core.plan import target_revision
from modeldeploy.core.settings import Settings
from modeldeploy.core.traffic.replica_ratio import canary_replicas
from rolloutkit import GATEWAY, MIRROR, OWNER, RATIO, Cluster, spec_for


def tolerance(demand: int, weight: int, routed: bool) -> float:
    """How far the real share may be from the status: none behind a route; under replicaRatio
    the one-pod granularity that replica_ratio.py documents (and the status' whole percent)."""
    if routed or weight == 0:
        return 0.5
    c = canary_replicas(demand, weight)
    return max(0.5, abs(100.0 * c / (demand + c) - weight))


ROUTERS = st.sampled_from(["replicaRatio", "gatewayAPI", "mirror"])
STRATEGIES = st.sampled_from(["Canary", "BlueGreen", "ABTest", "Immediate"])
MOVES = st.lists(
    st.tuples(
        st.sampled_from([None, None, "Passed", "Passed", "Failed", "Inconclusive"]),
        st.sampled_from([None, None, None, None, "promote", "abort", "retry", "undo"]),
        st.integers(0, 120),
        st.booleans(),
    ),
    max_size=16,
)


@settings(max_examples=150, deadline=None)
@given(
    strategy=STRATEGIES,
    router=ROUTERS,
    replicas=st.integers(1, 6),
    steps=st.lists(st.integers(1, 99), min_size=1, max_size=4, unique=True).map(sorted),
    moves=MOVES,
)
def test_the_status_weight_is_the_share_the_cluster_really_gives(
    strategy: str, router: str, replicas: int, steps: list[int], moves: list[Any]
) -> None:
    if strategy == "ABTest" and router == "replicaRatio":
        router = "gatewayAPI"  # ABTest routes by header: the API refuses it without a route
    routing = {"replicaRatio": RATIO, "gatewayAPI": GATEWAY, "mirror": MIRROR}[router]
    cluster = Cluster(spec_for("v1", strategy, routing, replicas, steps))
    cluster.reconcile()
    cluster.reconcile()
    cluster.spec = spec_for("v2", strategy, routing, replicas, steps)
    for verdict, action, seconds, ready in moves:
        cluster.now += timedelta(seconds=seconds)
        cluster.reconcile(verdict, action=action, ready=ready)
        status = cluster.status
        share = cluster.canary_share()
        stable = status.stable_revision.name if status.stable_revision else ""
        demand = cluster.pods(stable)
        assert abs(share - status.canary_weight) <= tolerance(
            demand, status.canary_weight, router != "replicaRatio"
        ), (share, status.canary_weight, strategy, router)
        if strategy in ("BlueGreen", "Immediate", "ABTest"):
            # No weighted live traffic before the switch (ABTest: only matched requests).
            assert share == 0.0
        # Clients that bypass the route never reach a candidate.
        if router != "replicaRatio" and status.canary_revision is not None:
            assert status.canary_revision.name not in cluster.selected("fraud")


def test_a_canary_at_full_size_keeps_the_pods_its_last_weight_needed() -> None:
    """Found by the property above: one stable pod, a last step of 60 %: the canary ran 2 pods
    (67 %), and once the step passed and it went to full size, the plan shrank it to the stable
    side's 1 pod (50 %) while the status said 67."""
    cluster = Cluster(spec_for("v1", "Canary", RATIO, 1, [60]))
    cluster.reconcile()
    cluster.reconcile()
    cluster.spec = spec_for("v2", "Canary", RATIO, 1, [60])
    cluster.reconcile()
    cluster.reconcile()
    cluster.now += timedelta(seconds=30)
    cluster.reconcile()
    cluster.reconcile("Passed")
    assert cluster.status.canary_revision is not None
    assert cluster.revisions[cluster.status.canary_revision.name].replicas == 2
    assert abs(cluster.canary_share() - cluster.status.canary_weight) < 1


def test_blue_green_candidate_is_reachable_only_through_the_preview_service() -> None:
    for routing in (RATIO, GATEWAY):
        cluster = Cluster(spec_for("v1", "BlueGreen", routing, 2, [50]))
        cluster.reconcile()
        cluster.reconcile()
        cluster.spec = spec_for("v2", "BlueGreen", routing, 2, [50])
        candidate = target_revision(OWNER, cluster.spec, Settings())
        cluster.reconcile()
        cluster.reconcile()
        assert cluster.pods(candidate) == 2  # full size, ready...
        assert candidate not in cluster.selected("fraud")  # ...but no client reaches it
        assert cluster.selected("fraud-canary") == {candidate}  # the preview does
        assert cluster.status.canary_weight == 0
        assert cluster.status.preview_url == "http://fraud-canary.ml.svc/v2/models/fraud"


def promoted(routing: dict[str, Any], replicas: int = 2) -> tuple[Cluster, str, str]:
    """v1 replaced by v2 (Immediate), both revisions kept: ready for `modeldeploy undo`."""
    cluster = Cluster(spec_for("v1", "Immediate", routing, replicas, [50]))
    cluster.reconcile()
    cluster.reconcile()
    old = cluster.status.stable_revision.name
    cluster.spec = spec_for("v2", "Immediate", routing, replicas, [50])
    for _ in range(3):
        cluster.reconcile()
    cluster.now += timedelta(minutes=10)  # past any scaleDownDelay: v1 is at zero
    cluster.reconcile()
    current = cluster.status.stable_revision.name
    assert current != old
    assert cluster.pods(old) == 0
    return cluster, old, current


def test_undo_keeps_the_current_revision_serving_until_the_old_one_is_ready() -> None:
    for routing in (RATIO, GATEWAY):
        cluster, old, current = promoted(routing)
        cluster.reconcile(action="undo", ready=False)  # the old model takes a while to load
        assert cluster.status.stable_revision.name == old  # decided...
        assert cluster.revisions[old].replicas == 2  # ...scaled to the stable size...
        assert cluster.revisions[current].replicas == 2  # ...while the current one stays
        assert cluster.selected("fraud") == {current}
        # No candidate: no role Service; a route sends to `fraud` itself.
        assert ("Service", "fraud-stable") not in cluster.children
        cluster.reconcile(ready=False)  # still loading: nothing moves
        assert cluster.revisions[current].replicas == 2
        assert current in cluster.selected("fraud")
        cluster.settle()  # the old pods turn Ready
        cluster.reconcile()  # ...and the operator sees them: traffic moves, then shrinks
        assert cluster.selected("fraud") == {old}
        cluster.now += timedelta(minutes=10)
        cluster.reconcile()
        assert cluster.revisions[current].replicas == 0


def test_mirroring_sizes_the_canary_for_the_copies_it_receives() -> None:
    """The route mirrors every request of its default rule, so the canary answers 100 % of
    that traffic as copies plus its live weight: (100 + w) % of the stable side's load."""
    cluster = Cluster(spec_for("v1", "Canary", MIRROR, 10, [10, 50]))
    cluster.reconcile()
    cluster.reconcile()
    cluster.spec = spec_for("v2", "Canary", MIRROR, 10, [10, 50])
    canary = target_revision(OWNER, cluster.spec, Settings())
    cluster.reconcile()
    assert cluster.revisions[canary].replicas == 11  # ceil(10 * 110 / 100)
    unmirrored = Cluster(spec_for("v1", "Canary", GATEWAY, 10, [10, 50]))
    unmirrored.reconcile()
    unmirrored.reconcile()
    unmirrored.spec = spec_for("v2", "Canary", GATEWAY, 10, [10, 50])
    unmirrored.reconcile()
    assert unmirrored.revisions[canary].replicas == 1  # 10 % of 10 pods
