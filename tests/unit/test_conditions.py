from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modeldeploy.core.conditions import ConditionUpdate, set_conditions

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def wire(conditions):
    """Conditions as the status patch writes them."""
    return [c.to_wire() for c in conditions]


def test_transition_time_moves_only_when_status_flips():
    first = set_conditions([], [ConditionUpdate("Ready", "False", "PodsNotReady", "wait")], T0, 1)
    same = set_conditions(
        first,
        [ConditionUpdate("Ready", "False", "PodsNotReady", "still")],
        T0 + timedelta(minutes=1),
        2,
    )
    flipped = set_conditions(
        same, [ConditionUpdate("Ready", "True", "Serving", "up")], T0 + timedelta(minutes=2), 2
    )
    assert wire(same)[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert wire(same)[0]["message"] == "still"
    assert wire(same)[0]["observedGeneration"] == 2
    assert wire(flipped)[0]["lastTransitionTime"] == "2026-01-01T00:02:00Z"


def test_conditions_not_updated_are_kept():
    old = set_conditions([], [ConditionUpdate("Custom", "True", "X", "")], T0, 1)
    new = set_conditions(old, [ConditionUpdate("Ready", "True", "Serving", "")], T0, 1)
    assert [c["type"] for c in wire(new)] == ["Ready", "Custom"]


# kstatus (Flux's health library, sigs.k8s.io/cli-utils) reads `Reconciling=True` as InProgress
# and `Stalled=True` as Failed before it looks at Ready; without them a half-done or rolled-back
# rollout reads Current because Ready is True.


def by_type(conditions):
    return {c["type"]: c for c in wire(conditions)}


def settle(progressing, ready=("True", "Serving"), degraded=("False", "AsExpected"), now=T0):
    return set_conditions(
        [],
        [
            ConditionUpdate("Ready", ready[0], ready[1], ""),
            ConditionUpdate("Progressing", progressing[0], progressing[1], progressing[2]),
            ConditionUpdate("Degraded", degraded[0], degraded[1], "secret s is missing"),
        ],
        now,
        3,
    )


def test_a_rollout_under_way_is_reconciling_with_its_reason_and_message():
    got = by_type(settle(("True", "NewRevision", "revision r2: step 1/3, 1/1 pods ready")))
    assert got["Reconciling"]["status"] == "True"
    assert got["Reconciling"]["reason"] == "NewRevision"
    assert got["Reconciling"]["message"] == "revision r2: step 1/3, 1/1 pods ready"
    assert got["Reconciling"]["observedGeneration"] == 3
    assert "Stalled" not in got


def test_a_paused_or_held_rollout_is_reconciling():
    paused = by_type(settle(("Unknown", "Paused", "spec.paused is true")))
    assert (paused["Reconciling"]["status"], paused["Reconciling"]["reason"]) == ("True", "Paused")
    held = by_type(settle(("True", "PausedAtStep", "holding at 20%")))
    assert held["Reconciling"]["status"] == "True"


def test_a_scale_up_waiting_for_pods_is_reconciling():
    got = by_type(settle(("True", "Scaling", "waiting"), ready=("False", "PodsNotReady")))
    assert got["Reconciling"]["status"] == "True"
    assert got["Reconciling"]["reason"] == "Scaling"
    # Pods not ready with nothing else said (Progressing already Complete) is a scale-up too.
    alone = by_type(settle(("False", "Complete", ""), ready=("False", "PodsNotReady")))
    assert alone["Reconciling"]["reason"] == "PodsNotReady"


def test_a_rolled_back_rollout_is_stalled_not_reconciling():
    got = by_type(settle(("False", "RolledBack", "error rate 9% > 1%; traffic is back on r1")))
    assert got["Stalled"]["status"] == "True"
    assert got["Stalled"]["reason"] == "RolledBack"
    assert got["Stalled"]["message"] == "error rate 9% > 1%; traffic is back on r1"
    assert "Reconciling" not in got


def test_degraded_is_stalled_with_the_degraded_reason_even_mid_rollout():
    got = by_type(
        settle(("True", "NewRevision", "revision r2"), degraded=("True", "MissingSecret"))
    )
    assert (got["Stalled"]["reason"], got["Stalled"]["message"]) == (
        "MissingSecret",
        "secret s is missing",
    )
    assert "Reconciling" not in got  # kstatus takes the first True one it meets: never both


def test_a_refused_write_alone_makes_a_healthy_status_stalled():
    """failures.degraded and reconcile set only Degraded: Stalled follows from what is kept."""
    healthy = settle(("False", "Complete", ""))
    refused = set_conditions(
        healthy, [ConditionUpdate("Degraded", "True", "ApplyFailed", "Service x: refused")], T0, 4
    )
    assert by_type(refused)["Stalled"]["reason"] == "ApplyFailed"


def test_neither_when_the_desired_revision_serves_fully():
    for ready in (("True", "Serving"), ("False", "ScaledToZero")):
        got = by_type(settle(("False", "Complete", ""), ready=ready))
        assert "Reconciling" not in got
        assert "Stalled" not in got


def test_reconciling_goes_away_when_the_rollout_completes_and_keeps_its_transition_time():
    start = settle(("True", "NewRevision", "r2 1/2"))
    later = set_conditions(
        start,
        [ConditionUpdate("Progressing", "True", "NewRevision", "r2 2/2")],
        T0 + timedelta(minutes=1),
        3,
    )
    assert by_type(later)["Reconciling"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert by_type(later)["Reconciling"]["message"] == "r2 2/2"
    done = set_conditions(later, [ConditionUpdate("Progressing", "False", "Complete", "")], T0, 3)
    assert "Reconciling" not in by_type(done)
