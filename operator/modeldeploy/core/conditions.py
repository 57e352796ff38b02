"""Conditions set by a pure function with an injectable clock.

`lastTransitionTime` changes only when a condition's status flips, so `kubectl wait` and
dashboards see real transitions, and a reconcile that finds nothing new changes nothing.

Besides Ready/Progressing/Degraded, every write carries the two conditions kstatus (the health
library of Flux and of `kubectl`-based pipelines, sigs.k8s.io/cli-utils) reads first:
`Reconciling=True` while the operator is still moving toward the spec (a rollout, a hold, a
scale-up), `Stalled=True` when it cannot get there without a person (a rollback, a missing
Secret, a refused write). Without them kstatus falls back on `Ready`, which stays True while
the old revision serves, and calls a half-done or rolled-back rollout Current. As Flux's own
controllers do, each is present only while True: a settled object has neither. They are
derived here, from the conditions being written, so no writer (plan, failures, reconcile) can
set Degraded without Stalled following.
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
        out.append(_condition(u, by_type.pop(u.type, None), now, generation))
    out.extend(c for c in by_type.values() if c.type not in (RECONCILING, STALLED))
    derived = _kstatus({c.type: c for c in out})
    out.extend(_condition(u, by_type.get(u.type), now, generation) for u in derived)
    return out


def _condition(
    update: ConditionUpdate, old: Condition | None, now: datetime, generation: int
) -> Condition:
    """The condition `update` asks for; its transition time moves only when its status does."""
    kept = old is not None and old.status == update.status
    return Condition(
        type=update.type,
        status=update.status,
        reason=update.reason,
        message=update.message,
        last_transition_time=old.last_transition_time if kept and old else whole_seconds(now),
        observed_generation=generation,
    )


RECONCILING = "Reconciling"
STALLED = "Stalled"

ROLLED_BACK_REASON = "RolledBack"
"""The Progressing reason the rollout writes with phase RolledBack: retrying the same model
needs a person (a spec change or `modeldeploy retry`)."""


def _kstatus(conditions: dict[str, Condition]) -> list[ConditionUpdate]:
    """The kstatus condition the others imply, if any: Stalled first (it needs a person, and
    kstatus takes the first True one it meets, so never both), then Reconciling.

    >>> from datetime import UTC
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> c = lambda ty, st, r: Condition(type=ty, status=st, reason=r, last_transition_time=t)
    >>> _kstatus({"Ready": c("Ready", "True", "Serving")})
    []
    >>> [(u.type, u.reason) for u in _kstatus({"Ready": c("Ready", "False", "PodsNotReady")})]
    [('Reconciling', 'PodsNotReady')]
    """
    degraded = conditions.get("Degraded")
    progressing = conditions.get("Progressing")
    ready = conditions.get("Ready")
    if degraded is not None and degraded.status == "True":
        return [ConditionUpdate(STALLED, "True", degraded.reason, degraded.message)]
    if progressing is not None and progressing.reason == ROLLED_BACK_REASON:
        return [ConditionUpdate(STALLED, "True", progressing.reason, progressing.message)]
    # Unknown is a hold (spec.paused, too little traffic to judge): still on the way.
    if progressing is not None and progressing.status in ("True", "Unknown"):
        return [ConditionUpdate(RECONCILING, "True", progressing.reason, progressing.message)]
    if ready is not None and ready.status != "True" and ready.reason != "ScaledToZero":
        return [ConditionUpdate(RECONCILING, "True", ready.reason, ready.message)]
    return []
