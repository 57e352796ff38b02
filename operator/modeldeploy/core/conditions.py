"""Conditions set by a pure function with an injectable clock.

`lastTransitionTime` changes only when a condition's status flips, so `kubectl wait` and
dashboards see real transitions, and a reconcile that finds nothing new changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from modeldeploy.api.status import Condition

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: Status
    reason: str
    message: str


def whole_seconds(now: datetime) -> datetime:
    """A time as the status keeps it: Kubernetes writes times at second precision."""
    return now.replace(microsecond=0)


def set_conditions(
    current: list[Condition],
    updates: list[ConditionUpdate],
    now: datetime,
    generation: int,
) -> list[Condition]:
    """The conditions after `updates`, in a stable order (updated types first, then the rest).

    >>> from datetime import UTC
    >>> t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    >>> first = set_conditions([], [ConditionUpdate("Ready", "True", "Up", "")], t0, 1)
    >>> again = set_conditions(first, [ConditionUpdate("Ready", "True", "Up", "ok")], t1, 2)
    >>> again[0].last_transition_time == first[0].last_transition_time
    True
    """
    by_type = {c.type: c for c in current}
    out = []
    for u in updates:
        old = by_type.pop(u.type, None)
        out.append(
            Condition(
                type=u.type,
                status=u.status,
                reason=u.reason,
                message=u.message,
                last_transition_time=(
                    whole_seconds(now)
                    if old is None or old.status != u.status
                    else old.last_transition_time
                ),
                observed_generation=generation,
            )
        )
    out.extend(by_type.values())
    return out
