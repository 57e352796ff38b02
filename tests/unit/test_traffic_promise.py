"""The traffic a revision really gets is what the status says, for every strategy and router.

The share is read back from what the plan writes, never from the plan's own arithmetic: the
entry Service's selector (which revisions' pods clients reach), the HTTPRoute's weights, and the
replica counts. Under replicaRatio, kube-proxy spreads requests evenly over the selected pods,
so a revision's share is its pods over all selected pods; the documented tolerance is the
granularity of one pod (core/traffic/replica_ratio.py). Under gatewayAPI the route decides.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import AnalysisCheck, MetricResult, ModelDeploymentStatus
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.live import LiveChildren, LiveRevision
from modeldeploy.core.naming import DEPLOYMENT_LABEL, REVISION_LABEL
from modeldeploy.core.plan import Plan, plan, target_revision
from modeldeploy.core.settings import Settings
from modeldeploy.core.traffic.replica_ratio import canary_replicas

OWNER = Owner("fraud", "ml", "uid-1")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RATIO: dict[str, Any] = {"replicaRatio": {}}
GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}
MIRROR = {"gatewayAPI": {"parentRefs": [{"name": "gw"}], "mirror": True}}
MATCH = [{"headers": [{"name": "x-variant", "value": "b"}]}]


def spec_for(version: str, strategy: str, routing: dict[str, Any], replicas: int,
             steps: list[int]) -> ModelDeploymentSpec:  # fmt: skip
    rollout: dict[str, Any] = {
        "strategy": strategy,
        "steps": [{"setWeight": w, "pause": "30s"} for w in steps],
        "analysis": {"interval": "30s", "iterations": 2, "failureLimit": 2},
        "trafficRouting": routing,
    }
    if strategy == "ABTest":
        rollout["match"] = MATCH
    return ModelDeploymentSpec.model_validate({
        "model": {"uri": f"https://m/{version}.onnx", "version": version},
        "serving": {"replicas": replicas}, "rollout": rollout,
    })  # fmt: skip


def check(at: datetime, verdict: str, requests: int = 500) -> AnalysisCheck:
    return AnalysisCheck(time=at, step=0, verdict=verdict, results=[
        MetricResult(metric="error-rate", verdict=verdict, canary_value=0.001, limit="0.01",
                     requests=requests)])  # fmt: skip


class Cluster:
    """The operator's view plus every child it wrote, as the API server would keep them."""

    def __init__(self, spec: ModelDeploymentSpec) -> None:
        self.spec = spec
        self.status = ModelDeploymentStatus()
        self.revisions: dict[str, LiveRevision] = {}
        self.children: dict[tuple[str, str], dict[str, Any]] = {}
        self.now = T0
        self.last: Plan | None = None

    def reconcile(self, verdict: str | None = None, action: str | None = None,
                  ready: bool = True) -> Plan:  # fmt: skip
        new_check = check(self.now, verdict) if verdict else None
        live = LiveChildren(dict(self.revisions), children=dict(self.children))
        p = plan(OWNER, self.spec, 1, self.status, live, Settings(), self.now, new_check,
                 action)  # type: ignore[arg-type]  # fmt: skip
        for kind, name in p.delete:
            self.children.pop((kind, name), None)
            if kind == "Deployment":
                self.revisions.pop(name, None)
        for w in p.writes:
            obj = w.obj
            kind, name = obj["kind"], obj["metadata"]["name"]
            if kind == "Deployment":
                count = obj["spec"]["replicas"]
                old = self.revisions.get(name)
                # Pods already ready stay ready; new ones become ready when the move says so.
                up = count if ready else min(count, old.ready_replicas if old else 0)
                self.revisions[name] = LiveRevision(
                    name, count, ready_replicas=up, created=self.now,
                    model_version=old.model_version if old else self.spec.model.version,
                    model_uri=old.model_uri if old else self.spec.model.uri,
                )  # fmt: skip
                if w.scale_only and (kind, name) in self.children:
                    self.children[(kind, name)]["spec"]["replicas"] = count
                    continue
            self.children[(kind, name)] = obj
        self.status = ModelDeploymentStatus.model_validate(p.status.to_wire())
        self.last = p
        return p

    def settle(self) -> None:
        """Every pod asked for becomes Ready (a model finished loading)."""
        for name, state in self.revisions.items():
            self.revisions[name] = LiveRevision(
                name, state.replicas, ready_replicas=state.replicas, created=state.created,
                model_version=state.model_version, model_uri=state.model_uri,
            )  # fmt: skip

    def selected(self, service: str) -> set[str]:
        """The revisions whose pods a Service selects."""
        selector = self.children[("Service", service)]["spec"]["selector"]
        assert selector[DEPLOYMENT_LABEL] == OWNER.name
        if REVISION_LABEL in selector:
            return {selector[REVISION_LABEL]}
        return set(self.revisions)

    def pods(self, revision: str) -> int:
        """The pods a revision is asked to run, once it can answer at all (kube-proxy sends
        nothing to a revision without a ready pod; the plan routes to none before that)."""
        state = self.revisions.get(revision)
        return state.replicas if state and state.ready_replicas else 0

    def canary_share(self) -> float:
        """Percent of live (non-matched, non-mirrored) requests the canary answers."""
        canary = self.status.canary_revision.name if self.status.canary_revision else None
        route = self.children.get(("HTTPRoute", OWNER.name))
        if route is not None:
            default = route["spec"]["rules"][-1]
            weights = {b["name"]: b.get("weight", 1) for b in default["backendRefs"]}
            total = sum(weights.values())
            served_by = {"fraud-stable": self.selected("fraud-stable"),
                         "fraud-canary": self.selected("fraud-canary")}  # fmt: skip
            to_canary = sum(w for b, w in weights.items() if canary in served_by[b])
            return 100.0 * to_canary / total if total else 0.0
        behind = self.selected("fraud")
        total = sum(self.pods(r) for r in behind)
        return 100.0 * self.pods(canary) / total if canary in behind and total else 0.0


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
        assert cluster.selected("fraud-stable") == {current}  # what the route sends to
        cluster.reconcile(ready=False)  # still loading: nothing moves
        assert cluster.revisions[current].replicas == 2
        assert current in cluster.selected("fraud")
        cluster.settle()  # the old pods turn Ready
        cluster.reconcile()  # ...and the operator sees them: traffic moves, then shrinks
        assert cluster.selected("fraud") == {old}
        assert cluster.selected("fraud-stable") == {old}
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
