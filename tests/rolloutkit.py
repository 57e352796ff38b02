"""A cluster seen from the operator, for pure rollout tests: plan() in a loop, with every child
it writes kept as the API server would keep it, and pods that turn Ready when a move says so.

Shared by the unit tests that read traffic shares and promotion decisions back from what the
plan writes (tests/unit/test_traffic_promise.py, tests/unit/test_promotion_rules.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import AnalysisCheck, MetricResult, ModelDeploymentStatus
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.live import LiveChildren, LiveRevision
from modeldeploy.core.naming import DEPLOYMENT_LABEL, REVISION_LABEL
from modeldeploy.core.plan import Plan, plan
from modeldeploy.core.settings import Settings

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
                  ready: bool = True, requests: int = 500,
                  webhooks: dict[Any, Any] | None = None) -> Plan:  # fmt: skip
        """`webhooks`: webhook hooks' results, as the runtime hands them in."""
        new_check = check(self.now, verdict, requests) if verdict else None
        live = LiveChildren(dict(self.revisions), children=dict(self.children))
        p = plan(OWNER, self.spec, 1, self.status, live, Settings(), self.now, new_check,
                 action, webhooks=webhooks)  # type: ignore[arg-type]  # fmt: skip
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
            served_by = {b: self.selected(b) for b in weights}
            to_canary = sum(w for b, w in weights.items() if canary in served_by[b])
            return 100.0 * to_canary / total if total else 0.0
        behind = self.selected("fraud")
        total = sum(self.pods(r) for r in behind)
        return 100.0 * self.pods(canary) / total if canary in behind and total else 0.0
