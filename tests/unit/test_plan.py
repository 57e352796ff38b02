"""The reconcile decision, step by step, from plain observed data (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.live import LiveChildren, LiveRevision, Problem
from modeldeploy.core.plan import Plan, plan, target_revision
from modeldeploy.core.settings import Settings

OWNER = Owner("fraud", "ml", "uid-1")
SETTINGS = Settings()
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_spec(version="v1", replicas=2, **extra):
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"uri": f"https://m/{version}.onnx", "version": version},
            "serving": {"replicas": replicas},
            **extra,
        }
    )


def run(spec, status=None, revisions=(), problems=(), children=None, now=T0, generation=1) -> Plan:
    observed = LiveChildren(
        revisions={r.name: r for r in revisions},
        children=children or {},
        problems=list(problems),
    )
    return plan(OWNER, spec, generation, status or ModelDeploymentStatus(), observed, SETTINGS, now)


def status_of(p: Plan) -> ModelDeploymentStatus:
    return ModelDeploymentStatus.model_validate(wire(p))


def wire(p: Plan) -> dict:
    """The status as the patch writes it."""
    return p.status.to_wire()


def cond(p: Plan, kind: str) -> dict:
    return next(c for c in wire(p)["conditions"] if c["type"] == kind)


def applied(p: Plan, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in p.apply if o["kind"] == kind}


def ready(name, replicas=2, created=T0, version="v1"):
    return LiveRevision(
        name,
        replicas,
        ready_replicas=replicas,
        available_replicas=replicas,
        created=created,
        model_version=version,
        model_uri=f"https://m/{version}.onnx",
    )


def test_first_apply_creates_the_revision_and_every_child():
    spec = make_spec()
    p = run(spec)
    rev = target_revision(OWNER, spec, SETTINGS)
    assert list(applied(p, "Deployment")) == [rev]
    # At rest the entry Service alone reaches the stable revision: no role Services.
    assert sorted(applied(p, "Service")) == ["fraud"]
    assert list(applied(p, "PodDisruptionBudget")) == ["fraud"]
    assert applied(p, "Deployment")[rev]["spec"]["replicas"] == 2
    assert [e.reason for e in p.events] == ["RevisionCreated"]
    assert wire(p)["stableRevision"] == {
        "name": rev,
        "modelVersion": "v1",
        "modelUri": "https://m/v1.onnx",
    }
    assert wire(p)["phase"] == "Progressing"
    assert cond(p, "Ready")["status"] == "False"
    assert wire(p)["history"][-1]["event"] == "Deployed"
    assert wire(p)["url"] == "http://fraud.ml.svc/v2/models/fraud"


def test_ready_once_the_stable_pods_are_ready():
    spec = make_spec()
    rev = target_revision(OWNER, spec, SETTINGS)
    first = run(spec)
    waiting = run(spec, status_of(first), [LiveRevision(rev, 2, ready_replicas=0)])
    assert cond(waiting, "Ready")["status"] == "False"
    assert waiting.events == []  # the revision is not announced twice
    up = run(spec, status_of(waiting), [ready(rev)], now=T0 + timedelta(seconds=20))
    assert cond(up, "Ready") | {"lastTransitionTime": None} == {
        "type": "Ready",
        "status": "True",
        "reason": "Serving",
        "message": f"2/2 pods of revision {rev} ready",
        "lastTransitionTime": None,
        "observedGeneration": 1,
    }
    assert cond(up, "Ready")["lastTransitionTime"] == "2026-03-01T12:00:20Z"
    assert wire(up)["phase"] == "Healthy"
    assert cond(up, "Progressing")["status"] == "False"
    assert wire(up)["readyReplicas"] == 2


def test_changing_replicas_keeps_the_revision():
    spec = make_spec()
    rev = target_revision(OWNER, spec, SETTINGS)
    base = status_of(run(spec, revisions=[ready(rev)]))
    p = run(make_spec(replicas=5), base, [ready(rev)], generation=2)
    assert list(applied(p, "Deployment")) == [rev]
    assert applied(p, "Deployment")[rev]["spec"]["replicas"] == 5
    assert wire(p)["observedGeneration"] == 2


IMMEDIATE = {"rollout": {"strategy": "Immediate"}}


def test_a_new_model_starts_a_new_revision_and_takes_over_when_ready():
    v1, v2 = make_spec("v1", **IMMEDIATE), make_spec("v2", **IMMEDIATE)
    old, new = target_revision(OWNER, v1, SETTINGS), target_revision(OWNER, v2, SETTINGS)
    assert old != new
    healthy = status_of(run(v1, revisions=[ready(old)]))

    rolling = run(v2, healthy, [ready(old)])
    assert list(applied(rolling, "Deployment")) == [new]  # the old one needs no write
    assert applied(rolling, "Deployment")[new]["spec"]["replicas"] == 2
    assert wire(rolling)["stableRevision"]["name"] == old
    assert wire(rolling)["canaryRevision"]["name"] == new
    assert cond(rolling, "Progressing")["reason"] == "NewRevision"
    assert (
        applied(rolling, "Service")["fraud-stable"]["spec"]["selector"]["modeldeploy.io/revision"]
        == old
    )

    switched = run(
        v2,
        status_of(rolling),
        [ready(old), ready(new, version="v2")],
        now=T0 + timedelta(seconds=30),
    )
    assert [e.reason for e in switched.events] == ["Promoted", "ScaledDown"]
    assert wire(switched)["stableRevision"]["name"] == new
    assert wire(switched)["previousRevision"] == {
        "name": old,
        "modelVersion": "v1",
        "modelUri": "https://m/v1.onnx",
        # Its pods as the live Deployment has them (scaled to 0 by this very plan), and no
        # traffic: the entry Service selects the new revision.
        "replicas": 2,
        "readyReplicas": 2,
        "weight": 0,
    }
    assert "canaryRevision" not in switched.status
    assert (
        applied(switched, "Service")["fraud"]["spec"]["selector"]["modeldeploy.io/revision"] == new
    )
    assert "fraud-stable" not in applied(switched, "Service")  # at rest: no role Services
    # Behind the entry Service every pod takes traffic: the old model stops at once.
    assert applied(switched, "Deployment")[old]["spec"] == {"replicas": 0}
    assert wire(switched)["history"][-1]["event"] == "Promoted"


def test_with_a_router_the_previous_revision_stays_warm_for_scale_down_delay():
    route = {
        "strategy": "Immediate",
        "trafficRouting": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
    }
    v1, v2 = make_spec("v1", rollout=route), make_spec("v2", rollout=route)
    old, new = target_revision(OWNER, v1, SETTINGS), target_revision(OWNER, v2, SETTINGS)
    healthy = status_of(run(v1, revisions=[ready(old)]))
    rolling = status_of(run(v2, healthy, [ready(old)]))
    switched = run(v2, rolling, [ready(old), ready(new, version="v2")])
    assert old not in applied(switched, "Deployment")  # kept up during scaleDownDelay
    assert switched.wake_at == T0 + timedelta(seconds=30)
    later = run(
        v2,
        status_of(switched),
        [ready(old), ready(new, version="v2")],
        now=T0 + timedelta(seconds=31),
    )
    scale = applied(later, "Deployment")[old]
    assert scale["spec"] == {"replicas": 0}
    assert "template" not in scale["spec"]
    assert [e.reason for e in later.events] == ["ScaledDown"]


def test_old_revisions_beyond_the_history_limit_are_deleted():
    spec = make_spec("v9", revisionHistoryLimit=1)
    current = target_revision(OWNER, spec, SETTINGS)
    status = ModelDeploymentStatus.model_validate({"stableRevision": {"name": current}})
    olds = [LiveRevision(f"fraud-old{i}", 0, created=T0 - timedelta(days=i)) for i in (1, 2, 3)]
    p = run(spec, status, [ready(current), *olds])
    assert p.delete == [("Deployment", "fraud-old2"), ("Deployment", "fraud-old3")]


def test_autoscaling_owns_the_stable_count_and_goes_away_when_removed():
    spec = make_spec(autoscaling={"minReplicas": 2, "maxReplicas": 8})
    rev = target_revision(OWNER, spec, SETTINGS)
    status = ModelDeploymentStatus.model_validate({"stableRevision": {"name": rev}})
    p = run(spec, status, [ready(rev, replicas=6)])
    assert applied(p, "Deployment")[rev]["spec"]["replicas"] == 6  # the HPA's choice, mirrored
    assert applied(p, "HorizontalPodAutoscaler")["fraud"]["spec"]["scaleTargetRef"]["name"] == rev

    plain = make_spec()
    gone = run(
        plain,
        status,
        [ready(target_revision(OWNER, plain, SETTINGS))],
        children={("HorizontalPodAutoscaler", "fraud"): {}},
    )
    assert ("HorizontalPodAutoscaler", "fraud") in gone.delete


def test_a_missing_secret_degrades_without_creating_pods():
    spec = make_spec(serving={"auth": {"secretRef": {"name": "tok"}}})
    problem = Problem(
        "spec.serving.auth.secretRef.name",
        "SecretNotFound",
        'Secret "tok" not found in namespace ml: create it, or change '
        "spec.serving.auth.secretRef.name",
    )
    p = run(spec, problems=[problem])
    assert p.apply == []
    assert wire(p)["phase"] == "Failed"
    degraded = cond(p, "Degraded")
    assert degraded["status"] == "True"
    assert degraded["reason"] == "SecretNotFound"
    assert degraded["message"].startswith('spec.serving.auth.secretRef.name: Secret "tok"')
    assert [(e.type, e.reason) for e in p.events] == [("Warning", "SecretNotFound")]
    again = run(spec, status_of(p), problems=[problem], now=T0 + timedelta(minutes=1))
    assert again.events == []  # no event storm while the user fixes it
    assert cond(again, "Degraded")["lastTransitionTime"] == degraded["lastTransitionTime"]


def test_a_failing_revision_is_reported():
    spec = make_spec()
    rev = target_revision(OWNER, spec, SETTINGS)
    stuck = LiveRevision(rev, 2, failed_reason='ReplicaSet "x" has timed out progressing.')
    p = run(spec, ModelDeploymentStatus.model_validate({"stableRevision": {"name": rev}}), [stuck])
    assert cond(p, "Degraded")["reason"] == "RevisionFailed"
    assert wire(p)["phase"] == "Failed"


def test_the_status_is_a_model_that_reads_back_equal_from_what_is_written():
    """reconcile writes the status only when the new model differs from the stored one: what
    the patch writes must read back equal, or an idle operator would write on every resync."""
    spec = make_spec(autoscaling={"minReplicas": 2, "maxReplicas": 8})
    rev = target_revision(OWNER, spec, SETTINGS)
    first = run(spec, now=T0 + timedelta(microseconds=123456))
    up = run(spec, status_of(first), [ready(rev)], now=T0 + timedelta(seconds=20, microseconds=7))
    for p in (first, up):
        assert isinstance(p.status, ModelDeploymentStatus)
        assert ModelDeploymentStatus.model_validate(wire(p)) == p.status
    assert wire(up)["history"][0]["time"] == "2026-03-01T12:00:00Z"  # whole seconds, as before
