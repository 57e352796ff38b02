"""The signature gate (modeldeploy.core.gate) and what plan() does with its verdict: a candidate
whose model breaks the stable one's clients never takes traffic, unless the spec allows it;
additions are reported; a check that cannot be made never wedges the rollout."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta
from typing import Any

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus, RevisionRef
from modeldeploy.core import gate
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.gate import SignatureReads, Unreadable, judge, wanted
from modeldeploy.core.live import LiveChildren, LiveRevision
from modeldeploy.core.plan import Plan, plan, target_revision
from modeldeploy.core.settings import Settings
from modeldeploy.core.signature import Signature, Tensor

OWNER = Owner("iris", "ml", "uid-1")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
X = Tensor("x", "FP32", (-1, 4))
Y = Tensor("y", "FP32", (-1, 3))
V1 = Signature((X,), (Y,))
RENAMED = Signature((Tensor("features", "FP32", (-1, 4)),), (Y,))
DROPPED = Signature((), (Y,))
MORE_OUT = Signature((X,), (Y, Tensor("p", "FP32", (-1, 3))))


def reads(after: gate.Read | None, before: gate.Read | None = V1, new: bool = True):
    return SignatureReads("iris-a", "iris-b", before, after, new)


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(gate).failed == 0


def test_a_breaking_change_is_refused_naming_the_tensor_and_the_fix() -> None:
    verdict = judge(reads(RENAMED), allow=False)
    assert verdict.outcome == "refuse"
    assert verdict.message == (
        "signature check: input x renamed to features; set "
        "spec.rollout.allowSignatureChange: true to roll it out anyway"
    )
    assert [(e.type, e.reason) for e in verdict.events] == [("Warning", "IncompatibleSignature")]


def test_allowed_breaking_change_passes_with_a_warning_once() -> None:
    verdict = judge(reads(DROPPED), allow=True)
    assert verdict.outcome == "pass"
    assert [(e.type, e.reason) for e in verdict.events] == [("Warning", "SignatureChangeAllowed")]
    assert "input x removed" in verdict.events[0].message
    assert judge(reads(DROPPED, new=False), allow=True).events == ()


def test_an_addition_is_reported_and_never_blocks() -> None:
    verdict = judge(reads(MORE_OUT), allow=False)
    assert verdict.outcome == "pass"
    assert [(e.type, e.reason) for e in verdict.events] == [("Normal", "SignatureChanged")]
    assert "output p added" in verdict.events[0].message
    same = judge(reads(V1), allow=False)
    assert (same.outcome, same.events) == ("pass", ())


def test_an_unread_side_waits_and_a_given_up_one_skips_the_check() -> None:
    assert judge(reads(None), allow=False).outcome == "wait"
    assert judge(reads(V1, before=None), allow=False).outcome == "wait"
    retrying = judge(reads(Unreadable("timed out", final=False)), allow=False)
    assert (retrying.outcome, retrying.events) == ("wait", ())
    assert "timed out" in retrying.message
    skipped = judge(reads(Unreadable("asks for credentials", final=True)), allow=False)
    assert skipped.outcome == "pass"
    assert [e.reason for e in skipped.events] == ["SignatureCheckSkipped"]
    assert "asks for credentials" in skipped.events[0].message


def live(name: str, ready: int = 1, version: str = "v1") -> LiveRevision:
    return LiveRevision(name, 1, ready_replicas=ready, available_replicas=ready,
                        created=T0, model_version=version,
                        model_uri=f"https://m/{version}.onnx")  # fmt: skip


def test_wanted_only_for_a_ready_candidate_that_has_not_begun() -> None:
    stable = ModelDeploymentStatus(stable_revision=RevisionRef(name="iris-a"))
    up = {"iris-a": live("iris-a"), "iris-b": live("iris-b")}
    assert wanted(stable, "iris-b", up) == ("iris-a", "iris-b")
    assert wanted(stable, "iris-b", {**up, "iris-b": live("iris-b", ready=0)}) is None
    began = stable.model_copy(update={"canary_revision": RevisionRef(name="iris-b"),
                                      "step_started_at": T0})  # fmt: skip
    assert wanted(began, "iris-b", up) is None
    refused = stable.model_copy(update={"rolled_back_revision": RevisionRef(name="iris-b")})
    assert wanted(refused, "iris-b", up) is None


# --- plan() with the verdict -------------------------------------------------------------------


def spec(version: str, **rollout: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({
        "model": {"uri": f"https://m/{version}.onnx", "version": version},
        "serving": {"replicas": 1}, "rollout": rollout,
    })  # fmt: skip


def run(s: ModelDeploymentSpec, status: ModelDeploymentStatus, revisions: list[LiveRevision],
        signatures: SignatureReads | None = None, now: datetime = T0) -> Plan:  # fmt: skip
    observed = LiveChildren(revisions={r.name: r for r in revisions})
    return plan(OWNER, s, 2, status, observed, Settings(), now, signatures=signatures)


def cond(p: Plan, kind: str) -> dict[str, Any]:
    return next(c for c in p.status.to_wire()["conditions"] if c["type"] == kind)


def rolling(after: Signature | None, **rollout: Any) -> tuple[Plan, list[LiveRevision]]:
    """v1 serving, v2's Deployment made, then v2's first pod Ready with `after` read."""
    v1, v2 = spec("v1"), spec("v2", **rollout)
    old, new = target_revision(OWNER, v1, Settings()), target_revision(OWNER, v2, Settings())
    healthy = run(v1, ModelDeploymentStatus(), [live(old)]).status
    started = run(v2, healthy, [live(old)]).status
    both = [live(old), live(new, version="v2")]
    read = SignatureReads(old, new, V1, after) if after is not None else None
    return run(v2, started, both, read, T0 + timedelta(seconds=5)), both


def test_a_breaking_candidate_gets_no_traffic_and_the_rollout_fails() -> None:
    p, both = rolling(RENAMED)
    old, new = both[0].name, both[1].name
    status = p.status.to_wire()
    assert status["phase"] == "Failed"
    assert status["canaryWeight"] == 0
    assert "canaryRevision" not in status
    assert status["stableRevision"]["name"] == old
    assert status["rolledBackRevision"]["name"] == new
    degraded = cond(p, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "IncompatibleSignature")
    assert "input x renamed to features" in degraded["message"]
    assert "allowSignatureChange: true" in degraded["message"]
    assert cond(p, "Stalled")["status"] == "True"
    assert cond(p, "Ready")["status"] == "True"  # the stable revision keeps serving
    assert [e.reason for e in p.events] == ["IncompatibleSignature", "ScaledDown"]
    scaled = {o["metadata"]["name"]: o["spec"] for o in p.apply if o["kind"] == "Deployment"}
    assert scaled[new] == {"replicas": 0}
    assert status["history"][-1]["event"] == "RolledBack"

    # The refusal stays said on the next reconciles (nothing is read again), with no new Event.
    gone = [both[0], LiveRevision(new, 0, created=T0, model_version="v2")]
    again = run(spec("v2"), p.status, gone, None, T0 + timedelta(seconds=30))
    assert again.status.to_wire()["phase"] == "Failed"
    assert cond(again, "Degraded")["message"] == degraded["message"]
    assert cond(again, "Progressing")["reason"] == "IncompatibleSignature"
    assert again.events == []
    # Allowing the change lets the same revision roll out (it is not read again).
    allowed = run(spec("v2", allowSignatureChange=True), again.status, gone, None,
                  T0 + timedelta(seconds=45))  # fmt: skip
    assert [e.reason for e in allowed.events] == ["Retry", "RolloutStarted"]
    assert allowed.status.canary_revision is not None
    assert allowed.status.rolled_back_revision is None
    assert cond(allowed, "Degraded")["status"] == "False"
    # A new spec (a fixed model) clears it.
    fixed = run(spec("v3"), again.status, gone, None, T0 + timedelta(seconds=60))
    assert cond(fixed, "Degraded")["status"] == "False"


def test_a_compatible_candidate_takes_its_step_weight() -> None:
    p, _ = rolling(MORE_OUT)
    assert p.status.canary_weight == 10
    assert p.status.phase == "Progressing"
    assert [e.reason for e in p.events] == ["SignatureChanged"]


def test_an_allowed_breaking_candidate_takes_its_step_weight() -> None:
    p, _ = rolling(DROPPED, allowSignatureChange=True)
    assert p.status.canary_weight == 10
    assert cond(p, "Degraded")["status"] == "False"
    assert [e.reason for e in p.events] == ["SignatureChangeAllowed"]


def test_an_unread_candidate_waits_without_traffic() -> None:
    v1, v2 = spec("v1"), spec("v2")
    old, new = target_revision(OWNER, v1, Settings()), target_revision(OWNER, v2, Settings())
    healthy = run(v1, ModelDeploymentStatus(), [live(old)]).status
    started = run(v2, healthy, [live(old)]).status
    both = [live(old), live(new, version="v2")]
    waiting = run(v2, started, both, SignatureReads(old, new, V1, None), T0)
    assert waiting.status.canary_weight == 0
    assert waiting.status.step_started_at is None  # the step's clock has not started
    assert cond(waiting, "Progressing")["reason"] == "CheckingSignature"
    assert waiting.wake_at == T0 + timedelta(seconds=10)
    # Without the gate (no reads handed in), the same plan routes the step's weight.
    assert run(v2, started, both, None, T0).status.canary_weight == 10
