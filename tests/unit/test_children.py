"""The table of child kinds (modeldeploy.core.children): what the plan writes and deletes, what
the runtime watches and deletes, and (tests/unit/test_chart.py) what the chart grants."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus
from modeldeploy.core.children import CHILD_KINDS, child_kind
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.live import LiveChildren, LiveRevision
from modeldeploy.core.plan import plan, target_revision
from modeldeploy.core.settings import Settings

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
