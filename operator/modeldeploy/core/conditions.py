"""Conditions set by a pure function with an injectable clock.

`lastTransitionTime` changes only when a condition's status flips, so `kubectl wait` and
dashboards see real transitions, and a reconcile that finds nothing new changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: Status
    reason: str
    message: str


def timestamp(now: datetime) -> str:
    """RFC 3339 at second precision, as Kubernetes writes times."""
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def set_conditions(
    current: list[dict[str, Any]],
    updates: list[ConditionUpdate],
    now: datetime,
    generation: int,
) -> list[dict[str, Any]]:
    """The conditions after `updates`, in a stable order (updated types first, then the rest).

    >>> from datetime import UTC
    >>> t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    >>> first = set_conditions([], [ConditionUpdate("Ready", "True", "Up", "")], t0, 1)
    >>> again = set_conditions(first, [ConditionUpdate("Ready", "True", "Up", "ok")], t1, 2)
    >>> again[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    True
    """
    by_type = {c["type"]: c for c in current}
    out = []
    for u in updates:
        old = by_type.pop(u.type, None)
        flipped = old is None or old.get("status") != u.status
        out.append(
            {
                "type": u.type,
                "status": u.status,
                "reason": u.reason,
                "message": u.message,
                "lastTransitionTime": (
                    timestamp(now) if old is None or flipped else old["lastTransitionTime"]
                ),
                "observedGeneration": generation,
            }
        )
    out.extend(by_type.values())
    return out
