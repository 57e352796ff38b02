"""The table of child kinds (modeldeploy.core.children): what the plan writes and deletes, what
the runtime watches and deletes, and (tests/unit/test_chart.py) what the chart grants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus
from modeldeploy.core.children import CHILD_KINDS, child_kind
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.live import LiveChildren, LiveRevision
from modeldeploy.core.plan import plan, target_revision
from modeldeploy.core.settings import Settings
from rolloutkit import GATEWAY, RATIO, Cluster, spec_for

OWNER = Owner("fraud", "ml", "uid-1")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def spec_of(version: str, routing: dict) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({
        "model": {"uri": f"https://m/{version}.onnx", "version": version},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 4},
        "rollout": {"strategy": "Canary", "trafficRouting": routing, "hooks": {"preRollout": [
            {"name": "smoke", "job": {"template": {"spec": {"containers": [
                {"name": "smoke", "image": "curl"}]}}}}]}},
    })  # fmt: skip


def test_every_object_the_plan_writes_or_deletes_is_a_kind_of_the_table():
    """A canary in progress behind a Gateway API route, with an HPA and an old revision to scale
    down: every kind the plan can write shows up, each with the table's apiVersion."""
    routed = {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}
    old, stable = (target_revision(OWNER, spec_of(v, routed), Settings()) for v in ("v0", "v1"))
    status = ModelDeploymentStatus.model_validate(
        {"stableRevision": {"name": stable}, "previousRevision": {"name": old}}
    )
    revisions = {n: LiveRevision(n, 2, ready_replicas=2, created=T0) for n in (old, stable)}
    p = plan(OWNER, spec_of("v2", routed), 1, status, LiveChildren(revisions), Settings(), T0)
    written = {(o["apiVersion"], o["kind"]) for o in p.apply}
    assert written == {(k.api_version, k.kind) for k in CHILD_KINDS}

    # Back to replicaRatio and no autoscaling: the HPA and the route are deleted by kind.
    plain = ModelDeploymentSpec.model_validate({"model": {"uri": "https://m/v1.onnx"}})
    live = {("HorizontalPodAutoscaler", "fraud"): {}, ("HTTPRoute", "fraud"): {}}
    p = plan(OWNER, plain, 2, status, LiveChildren(revisions, live), Settings(), T0)
    assert {kind for kind, _ in p.delete} == {"HorizontalPodAutoscaler", "HTTPRoute"}
    assert all(child_kind(kind) in CHILD_KINDS for kind, _ in p.delete)


def test_an_unknown_kind_is_refused_by_name():
    with pytest.raises(KeyError, match="ConfigMap"):
        child_kind("ConfigMap")


def at_rest(cluster: Cluster) -> set[tuple[str, str]]:
    """Every child but the Deployments (one per revision, counted apart)."""
    return {key for key in cluster.children if key[0] != "Deployment"}


def roll(cluster: Cluster, verdict: str) -> set[tuple[str, str]]:
    """Reconcile, each check passed or failed, until the candidate is promoted or rolled back;
    the children seen while it ran."""
    seen: set[tuple[str, str]] = set()
    for _ in range(30):
        cluster.now += timedelta(seconds=31)
        cluster.reconcile(verdict=verdict)
        seen |= at_rest(cluster)
        if cluster.status.canary_revision is None:
            return seen
    raise AssertionError("the rollout never ended")


@pytest.mark.parametrize("routing", [RATIO, GATEWAY], ids=["replicaRatio", "gatewayAPI"])
@pytest.mark.parametrize("verdict", ["Passed", "Failed"])
def test_role_services_come_with_a_candidate_and_go_with_it(routing, verdict):
    """At rest the entry Service alone; a rollout adds NAME-canary (the preview) and
    NAME-stable; its promotion or rollback deletes both, and a route never names one of them
    at rest."""
    cluster = Cluster(spec_for("v1", "Canary", routing, 2, [50]))
    cluster.reconcile()
    cluster.settle()
    cluster.reconcile()
    route = {("HTTPRoute", "fraud")} if routing is GATEWAY else set()
    rest = {("Service", "fraud"), ("PodDisruptionBudget", "fraud"), *route}
    assert at_rest(cluster) == rest
    assert len([k for k in cluster.children if k[0] == "Deployment"]) == 1

    cluster.spec = spec_for("v2", "Canary", routing, 2, [50])
    cluster.reconcile()
    assert at_rest(cluster) == rest | {("Service", "fraud-canary"), ("Service", "fraud-stable")}
    assert cluster.status.preview_url == "http://fraud-canary.ml.svc/v2/models/fraud"
    cluster.settle()
    during = roll(cluster, verdict)
    assert ("Service", "fraud-canary") in during
    # The plan that ended the rollout applied the route first; the Services go once it is live.
    cluster.reconcile()
    assert at_rest(cluster) == rest
    if route:
        backends = [b["name"] for r in cluster.children[("HTTPRoute", "fraud")]["spec"]["rules"]
                    for b in r["backendRefs"]]  # fmt: skip
        assert backends == ["fraud"]


def test_the_pdb_comes_and_goes_with_a_second_pod():
    """One replica: no PodDisruptionBudget (it would guard nothing); two: one; back to one: it
    is deleted."""
    cluster = Cluster(spec_for("v1", "Canary", RATIO, 1, [50]))
    cluster.reconcile()
    assert ("PodDisruptionBudget", "fraud") not in cluster.children
    assert at_rest(cluster) == {("Service", "fraud")}
    cluster.spec = spec_for("v1", "Canary", RATIO, 2, [50])
    cluster.reconcile()
    assert ("PodDisruptionBudget", "fraud") in cluster.children
    cluster.spec = spec_for("v1", "Canary", RATIO, 1, [50])
    p = cluster.reconcile()
    assert ("PodDisruptionBudget", "fraud") in p.delete
    assert ("PodDisruptionBudget", "fraud") not in cluster.children


def test_the_canary_example_has_three_children_at_rest():
    """Issue 19's target: at most 3 objects per ModelDeployment at rest (it was 5)."""
    doc = yaml.safe_load((Path(__file__).parents[2] / "examples" / "canary.yaml").read_text())
    cluster = Cluster(ModelDeploymentSpec.model_validate(doc["spec"]))
    for _ in range(3):
        cluster.reconcile()
        cluster.settle()
    assert sorted(kind for kind, _ in cluster.children) == [
        "Deployment", "PodDisruptionBudget", "Service"
    ]  # fmt: skip
