"""Which of a reconcile's Events notify whom, and with what body. Pure.

A notification follows an Event the operator posts (the one `kubectl describe` shows), so a
receiver hears exactly what the cluster records, nothing more: rollout started, step advanced,
promoted, rolled back, hook failed. The runtime sends the notices this returns in the
background (runtime/notify.py); nothing here waits, and nothing a receiver answers comes back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modeldeploy.api.notifications import Notifier, NotifyEvent, NotifyFormat
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus, RevisionRef
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.events import Event

NOTIFIED: frozenset[str] = frozenset(e.value for e in NotifyEvent)
"""Event reasons that notify."""


@dataclass(frozen=True)
class Notice:
    """One POST owed to one receiver."""

    notifier: Notifier
    field: str
    """The spec field of the receiver (spec.rollout.notifications[0]), for the log."""
    event: NotifyEvent
    body: dict[str, Any]


def notices(
    owner: Owner,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    events: Iterable[Event],
    now: datetime,
) -> list[Notice]:
    """The notices a reconcile's Events call for: each notifying Event, to each receiver
    that asked for its kind (all five when it named none), in the Events' order."""
    out: list[Notice] = []
    receivers = list(enumerate(spec.rollout.notifications or []))
    for event in events:
        if event.reason not in NOTIFIED:
            continue
        kind = NotifyEvent(event.reason)
        for i, notifier in receivers:
            if notifier.events is not None and kind not in notifier.events:
                continue
            body = notice_body(notifier.format, owner, event, status, now)
            out.append(Notice(notifier, f"spec.rollout.notifications[{i}]", kind, body))
    return out


def notice_body(
    form: NotifyFormat,
    owner: Owner,
    event: Event,
    status: ModelDeploymentStatus,
    now: datetime,
) -> dict[str, Any]:
    """The JSON a receiver gets: the whole record, or Slack's {"text": ...}.

    >>> from datetime import UTC
    >>> body = notice_body(NotifyFormat.SLACK, Owner("fraud", "ml", "u-1"),
    ...     Event("Warning", "RolledBack", "revision fraud-b rolled back: hook failed"),
    ...     ModelDeploymentStatus(), datetime(2026, 1, 1, tzinfo=UTC))
    >>> body
    {'text': 'ml/fraud RolledBack (Warning): revision fraud-b rolled back: hook failed'}
    """
    if form == NotifyFormat.SLACK:
        marker = " (Warning)" if event.type == "Warning" else ""
        return {"text": f"{owner.namespace}/{owner.name} {event.reason}{marker}: "
                        f"{event.message}"}  # fmt: skip
    return {
        "event": event.reason,
        "type": event.type,
        "message": event.message,
        "time": now.isoformat().replace("+00:00", "Z"),
        "modelDeployment": {"namespace": owner.namespace, "name": owner.name, "uid": owner.uid},
        "phase": status.phase.value if status.phase else None,
        "stableRevision": _ref(status.stable_revision),
        "canaryRevision": _ref(status.canary_revision),
        "rolledBackRevision": _ref(status.rolled_back_revision),
        "canaryWeight": status.canary_weight,
    }


def _ref(ref: RevisionRef | None) -> dict[str, Any] | None:
    return {"name": ref.name, "modelVersion": ref.model_version} if ref else None
