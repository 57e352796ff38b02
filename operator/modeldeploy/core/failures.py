"""A write the API server refused: the status it becomes, its Event, and when to try again.

One mechanism for every such failure, whatever the input behind it (a child the API server
rejects, a status it refuses, a conflict): reconcile carries on with the other writes, and the
status says `Degraded=True` with a reason and a message naming the object and the API server's
answer. The scheduler then waits `backoff_seconds(failures)` before that object's next
reconcile, so a persistent refusal costs one request per delay, not one per second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from modeldeploy.api.status import ModelDeploymentStatus, Phase
from modeldeploy.core.conditions import ConditionUpdate, set_conditions
from modeldeploy.core.events import Event

BACKOFF_FIRST_SECONDS: Final = 1.0
BACKOFF_CAP_SECONDS: Final = 300.0
"""Five minutes at most between tries: a fix outside the spec (an admission webhook, a quota)
is picked up within that; a spec change retries at once."""


def backoff_seconds(failures: int) -> float:
    """How long to wait after `failures` failed reconciles in a row: 1 s, doubling, capped.

    >>> [backoff_seconds(n) for n in (0, 1, 2, 3, 9, 10, 100)]
    [0.0, 1.0, 2.0, 4.0, 256.0, 300.0, 300.0]
    """
    if failures <= 0:
        return 0.0
    if failures > 32:  # 2**32 s is far past the cap: no need to compute it
        return BACKOFF_CAP_SECONDS
    return min(BACKOFF_CAP_SECONDS, BACKOFF_FIRST_SECONDS * 2.0 ** (failures - 1))


FailureReason = Literal["ApplyFailed", "DeleteFailed", "StatusRejected"]


@dataclass(frozen=True)
class Failure:
    """One write the API server refused, with its answer (which names the field it refused)."""

    reason: FailureReason
    kind: str
    name: str
    answer: str

    @property
    def message(self) -> str:
        return f"{self.kind} {self.name}: {self.answer}"


def degraded(
    stored: ModelDeploymentStatus,
    status: ModelDeploymentStatus,
    failures: list[Failure],
    now: datetime,
    generation: int,
) -> tuple[ModelDeploymentStatus, list[Event]]:
    """`status` saying what failed (Degraded=True, phase Failed), and a Warning Event when that
    is news compared with the `stored` status: a refusal repeated at each retry is posted once.

    The message carries nothing that changes between tries (no count, no time), so a retry that
    fails the same way leaves the status as it was and writes nothing.
    """
    if not failures:
        return status, []
    message = "; ".join(f.message for f in failures)
    reason = failures[0].reason
    update = ConditionUpdate("Degraded", "True", reason, message)
    conditions = set_conditions(status.conditions, [update], now, generation)
    out = status.model_copy(
        update={"conditions": conditions, "phase": Phase.FAILED, "observed_generation": generation}
    )
    # Compared after the status model has cut the message to what it holds.
    written = next(c for c in out.conditions if c.type == "Degraded")
    before = next((c for c in stored.conditions if c.type == "Degraded"), None)
    news = before is None or (before.status, before.reason, before.message) != (
        "True", reason, written.message,
    )  # fmt: skip
    return out, [Event("Warning", reason, message)] if news else []
