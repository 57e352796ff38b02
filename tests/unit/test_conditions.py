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
