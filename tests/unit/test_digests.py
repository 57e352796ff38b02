"""The served model's digest in the status: when to read it, what a read says, how it is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus, RevisionRef
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.digests import MISMATCH_REASON, Digest, judge, recorded, wanted
from modeldeploy.core.live import LiveChildren, LiveRevision
from modeldeploy.core.plan import Plan, plan, target_revision
from modeldeploy.core.settings import Settings

A, B, C = "a" * 64, "b" * 64, "c" * 64
OWNER = Owner("fraud", "ml", "uid-1")
SETTINGS = Settings()
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IMMEDIATE = {"rollout": {"strategy": "Immediate"}}


def make_spec(version="v1", **extra):
    return ModelDeploymentSpec.model_validate(
        {"model": {"uri": f"https://m/{version}.onnx", "version": version},
         "serving": {"replicas": 2}, **extra}
    )  # fmt: skip


def ready(name, version="v1"):
    return LiveRevision(name, 2, ready_replicas=2, available_replicas=2, created=T0,
                        model_version=version, model_uri=f"https://m/{version}.onnx")  # fmt: skip


def run(spec, status=None, revisions=(), now=T0, digests=None) -> Plan:
    live = LiveChildren(revisions={r.name: r for r in revisions})
    return plan(OWNER, spec, 1, status or ModelDeploymentStatus(), live, SETTINGS, now,
                digests=digests)  # fmt: skip


def wire(p: Plan) -> dict:
    return p.status.to_wire()


def status_of(p: Plan) -> ModelDeploymentStatus:
    return ModelDeploymentStatus.model_validate(wire(p))


def test_a_revision_is_read_once_all_its_pods_are_ready_and_never_again():
    status = ModelDeploymentStatus(stable_revision=RevisionRef(name="fraud-1"))
    coming_up = {"fraud-1": LiveRevision("fraud-1", 3, ready_replicas=2)}
    up = {"fraud-1": LiveRevision("fraud-1", 3, ready_replicas=3)}
    assert wanted(status, coming_up) == []
    assert wanted(status, up) == ["fraud-1"]
    read = ModelDeploymentStatus(stable_revision=RevisionRef(name="fraud-1", model_sha256=A))
    assert wanted(read, up) == []
    # A conflict is recorded too: reading again would only repeat the Warning.
    conflict = RevisionRef(name="fraud-1", model_sha256_conflict=[A, B])
    assert wanted(ModelDeploymentStatus(stable_revision=conflict), up) == []


def test_both_serving_revisions_are_read_and_the_others_are_not():
    status = ModelDeploymentStatus(
        stable_revision=RevisionRef(name="s"),
        canary_revision=RevisionRef(name="c"),
        previous_revision=RevisionRef(name="p"),
    )
    live = {n: LiveRevision(n, 1, ready_replicas=1) for n in "scp"}
    assert wanted(status, live) == ["s", "c"]
    assert wanted(status, {}) == []  # a revision whose Deployment is gone has no pods to ask


def test_pods_that_agree_give_the_digest():
    digest, events = judge("fraud-1", {"pod-a": A.upper(), "pod-b": A}, pin=None)
    assert digest == Digest(A)
    assert events == []
    assert judge("fraud-1", {"pod-a": A}, pin=A) == (Digest(A), [])


def test_an_older_image_without_the_info_metric_gives_nothing_to_record():
    assert judge("fraud-1", {"pod-a": None, "pod-b": "not-hex"}, pin=None) == (None, [])
    # One pod without it does not hide the others' answer.
    assert judge("fraud-1", {"pod-a": None, "pod-b": B}, pin=None) == (Digest(B), [])


def test_pods_that_disagree_are_a_finding_with_every_digest_kept():
    digest, events = judge("fraud-1", {"pod-a": A, "pod-b": B, "pod-c": A}, pin=None)
    assert digest == Digest(conflict=(A, B))
    [event] = events
    assert (event.type, event.reason) == ("Warning", MISMATCH_REASON)
    assert "fraud-1" in event.message
    assert f"{A[:12]} on pod-a, pod-c" in event.message
    assert f"{B[:12]} on pod-b" in event.message
    assert "pin spec.model.sha256" in event.message


def test_bytes_other_than_the_pin_are_a_finding_even_when_the_pods_agree():
    digest, [event] = judge("fraud-1", {"pod-a": B}, pin=A)
    assert digest == Digest(conflict=(B,))
    assert f"spec.model.sha256 pins {A[:12]}" in event.message


def test_the_plan_records_the_digest_on_the_revision_and_its_history():
    spec = make_spec()
    rev = target_revision(OWNER, spec, SETTINGS)
    first = status_of(run(spec))
    assert "modelSha256" not in wire(run(spec, first, [ready(rev)]))["stableRevision"]
    p = run(spec, first, [ready(rev)], digests={rev: {"pod-a": A, "pod-b": A}})
    assert wire(p)["stableRevision"]["modelSha256"] == A
    # The Deployed line was written before any pod ran; it names the same bytes.
    assert [(h["event"], h.get("modelSha256")) for h in wire(p)["history"]] == [("Deployed", A)]
    assert p.events == []
    # Kept by every later plan, with nothing read again.
    later = run(spec, status_of(p), [ready(rev)], now=T0 + timedelta(minutes=5))
    assert wire(later)["stableRevision"]["modelSha256"] == A
    assert recorded(status_of(later)) == {rev: Digest(A)}


def test_a_promoted_revision_takes_its_digest_to_stable_and_the_old_one_keeps_its_own():
    v1, v2 = make_spec("v1", **IMMEDIATE), make_spec("v2", **IMMEDIATE)
    old, new = target_revision(OWNER, v1, SETTINGS), target_revision(OWNER, v2, SETTINGS)
    healthy = status_of(run(v1, revisions=[ready(old)], digests={old: {"p1": A}}))
    rolling = run(v2, healthy, [ready(old)])
    assert wire(rolling)["canaryRevision"]["name"] == new
    assert "modelSha256" not in wire(rolling)["canaryRevision"]
    # Its pods Ready: read, and promoted in the same reconcile.
    switched = run(v2, status_of(rolling), [ready(old), ready(new, version="v2")],
                   now=T0 + timedelta(seconds=30), digests={new: {"p2": B}})  # fmt: skip
    assert wire(switched)["stableRevision"]["modelSha256"] == B
    assert wire(switched)["previousRevision"]["modelSha256"] == A
    promoted = wire(switched)["history"][-1]
    assert (promoted["event"], promoted["revision"], promoted["modelSha256"]) == (
        "Promoted", new, B,
    )  # fmt: skip


def test_a_conflict_is_kept_in_the_status_and_warned_about_once():
    spec = make_spec()
    rev = target_revision(OWNER, spec, SETTINGS)
    first = status_of(run(spec))
    p = run(spec, first, [ready(rev)], digests={rev: {"pod-a": A, "pod-b": C}})
    assert wire(p)["stableRevision"]["modelSha256Conflict"] == [A, C]
    assert "modelSha256" not in wire(p)["stableRevision"]
    assert [e.reason for e in p.events] == [MISMATCH_REASON]
    again = run(spec, status_of(p), [ready(rev)])
    assert wire(again)["stableRevision"]["modelSha256Conflict"] == [A, C]
    assert again.events == []
    assert wanted(status_of(again), {rev: ready(rev)}) == []


def test_the_digest_is_read_from_the_info_metric_and_nothing_else():
    from modeldeploy.core.digests import reported

    text = (
        "# HELP modelserve_model_info The served model's identity\n"
        "# TYPE modelserve_model_info gauge\n"
        f'modelserve_model_info{{model="iris",sha256="{A}",uri="file:///m.onnx",version="1"}} 1.0\n'
        f'modelserve_requests_total{{code="200",sha256="{B}"}} 3.0\n'
    )
    assert reported(text) == A
    assert reported("modelserve_ready 1.0\n") is None
    assert reported('modelserve_model_info{sha256="short"} 1.0\n') is None
