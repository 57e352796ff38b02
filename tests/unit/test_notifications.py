"""Which Events notify whom, pure: from the Events a plan produces to the notices owed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.core.events import Event
from modeldeploy.core.notifications import notices
from rolloutkit import GATEWAY, OWNER, T0, Cluster, spec_for

TEAM = {"name": "team", "urlFrom": {"secretKeyRef": {"name": "slack", "key": "url"}},
        "format": "Slack", "events": ["Promoted", "RolledBack"]}  # fmt: skip
AUDIT = {"name": "audit", "url": "http://audit.ops.svc/rollouts"}


def notified(version: str, *receivers: dict[str, Any]) -> ModelDeploymentSpec:
    wire = spec_for(version, "Canary", GATEWAY, 2, [20, 50]).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    wire["rollout"]["notifications"] = list(receivers)
    return ModelDeploymentSpec.model_validate(wire)


def test_a_rollout_start_notifies_every_receiver_that_asked_for_it() -> None:
    cluster = Cluster(notified("v1", TEAM, AUDIT))
    cluster.reconcile()
    cluster.spec = notified("v2", TEAM, AUDIT)
    p = cluster.reconcile()
    owed = notices(OWNER, cluster.spec, p.status, p.events, cluster.now)
    assert [(n.notifier.name, n.event) for n in owed] == [("audit", "RolloutStarted")]
    body = owed[0].body
    assert owed[0].field == "spec.rollout.notifications[1]"
    assert body["event"] == "RolloutStarted"
    assert body["type"] == "Normal"
    assert body["message"].startswith("rolling out revision fraud-")
    assert body["modelDeployment"] == {"namespace": "ml", "name": "fraud", "uid": "uid-1"}
    assert body["phase"] == "Progressing"
    assert body["stableRevision"]["modelVersion"] == "v1"
    assert body["canaryRevision"]["modelVersion"] == "v2"
    assert body["rolledBackRevision"] is None
    assert body["time"] == "2026-03-01T12:00:00Z"


def test_a_rollback_notifies_slack_as_text_and_the_audit_receiver_as_json() -> None:
    cluster = Cluster(notified("v1", TEAM, AUDIT))
    cluster.reconcile()
    cluster.spec = notified("v2", TEAM, AUDIT)
    cluster.reconcile()
    p = cluster.reconcile(action="abort")
    owed = notices(OWNER, cluster.spec, p.status, p.events, cluster.now)
    assert [(n.notifier.name, n.event) for n in owed] == [("team", "RolledBack"),
                                                         ("audit", "RolledBack")]  # fmt: skip
    (text,) = owed[0].body.values()
    assert text.startswith("ml/fraud RolledBack (Warning): revision fraud-")
    assert text.endswith("rolled back: aborted by the user (modeldeploy abort)")
    assert owed[1].body["rolledBackRevision"]["modelVersion"] == "v2"


def test_a_step_advanced_and_a_promotion_notify_and_nothing_else_does() -> None:
    spec = notified("v1", AUDIT)
    events = [Event("Normal", "StepAdvanced", "step 1/2: weight 20% → 50%"),
              Event("Normal", "ScaledDown", "scaled revision x to 0"),
              Event("Normal", "Repaired", "Service fraud was missing; recreated"),
              Event("Normal", "Promoted", "revision fraud-b promoted: all 2 steps passed"),
              Event("Warning", "HookFailed", "preRollout hook checker ... failed")]  # fmt: skip
    status = Cluster(spec).reconcile().status
    owed = notices(OWNER, spec, status, events, T0 + timedelta(seconds=1))
    assert [n.event for n in owed] == ["StepAdvanced", "Promoted", "HookFailed"]


def test_no_receivers_no_notices() -> None:
    spec = spec_for("v1", "Canary", GATEWAY, 2, [20])
    event = Event("Normal", "RolloutStarted", "rolling out")
    assert notices(OWNER, spec, Cluster(spec).reconcile().status, [event], T0) == []
