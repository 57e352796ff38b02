"""One reconcile: observe → decide → act, always ending in a status sync.

Called by the kopf handlers for events and on the resync timer; idempotent, so running it
twice, or after a restart, does no harm. It writes only what differs from the live objects.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ParamSpec

from pydantic import ValidationError

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus, Phase
from modeldeploy.core.conditions import ConditionUpdate, set_conditions
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.events import Event
from modeldeploy.core.live import LiveChildren
from modeldeploy.core.naming import ACTION_ANNOTATION
from modeldeploy.core.plan import plan, target_revision
from modeldeploy.core.rollout import ACTIONS, Action, analysis_due
from modeldeploy.core.settings import Settings
from modeldeploy.runtime import operator_metrics
from modeldeploy.runtime.kube import SCALE_MANAGER, Kube
from modeldeploy.runtime.providers import MetricsProviders

log = logging.getLogger(__name__)
P = ParamSpec("P")


@dataclass
class Reconciled:
    """What one reconcile did and asks of its caller: Events to post, how many writes it sent
    (none: everything was in place), and when it must run again at the latest."""

    events: list[Event] = field(default_factory=list)
    writes: int = 0
    wake_at: datetime | None = None


def _counted(run: Callable[P, Reconciled]) -> Callable[P, Reconciled]:
    """Count reconciles by result, and time the good ones (the operator's own metrics)."""

    @functools.wraps(run)
    def counted(*args: P.args, **kwargs: P.kwargs) -> Reconciled:
        started = time.perf_counter()
        try:
            reconciled = run(*args, **kwargs)
        except Exception:
            operator_metrics.RECONCILES.labels(result="error").inc()
            raise
        operator_metrics.RECONCILES.labels(result="ok").inc()
        operator_metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        return reconciled

    return counted


@_counted
def reconcile(
    kube: Kube,
    body: dict[str, Any],
    children: Iterable[dict[str, Any]],
    settings: Settings,
    now: datetime,
    providers: MetricsProviders | None = None,
) -> Reconciled:
    meta = body["metadata"]
    owner = Owner(meta["name"], meta["namespace"], meta["uid"])
    generation = int(meta.get("generation") or 0)
    stored: dict[str, Any] = body.get("status") or {}
    try:
        status_before = ModelDeploymentStatus.model_validate(stored)
    except ValidationError:
        status_before = ModelDeploymentStatus()  # unreadable status: start over, never crash
    out = Reconciled()
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        # The CRD refuses bad specs; this catches objects stored under an older schema.
        message = "; ".join(
            f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        conditions = set_conditions(
            status_before.conditions,
            [ConditionUpdate("Degraded", "True", "InvalidSpec", message)],
            now,
            generation,
        )
        failed = status_before.model_copy(update={
            "observed_generation": generation, "phase": Phase.FAILED, "conditions": conditions,
        })  # fmt: skip
        out.events.append(Event("Warning", "InvalidSpec", message))
        out.wake_at = now
        _sync_status(kube, owner, stored, status_before, failed, out)
        return out

    seen = LiveChildren.index(children, spec, owner.namespace, kube.exists)
    requested = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
    action = pending_action(requested, status_before.handled_action)
    check = None
    target = target_revision(owner, spec, settings)
    if providers and analysis_due(spec, status_before, target, seen.revisions, now):
        stable = status_before.stable_revision.name if status_before.stable_revision else None
        check = providers.check(owner.namespace, owner.name, spec.rollout.analysis, target,
                                stable, status_before.current_step or 0, now)  # fmt: skip
    decided = plan(
        owner, spec, generation, status_before, seen, settings, now, check=check, action=action
    )
    status = decided.status
    if requested and requested != status_before.handled_action:
        status = status.model_copy(update={"handled_action": requested})
        if action is None:
            hint = "use promote, abort, retry or undo (modeldeploy ACTION NAME)"
            message = f"{ACTION_ANNOTATION}={requested!r} is not an action: {hint}"
            out.events.append(Event("Warning", "UnknownAction", message))
    out.events.extend(decided.events)
    out.wake_at = decided.wake_at
    operator_metrics.record_status(owner.namespace, owner.name, status)
    if check is not None:
        operator_metrics.CHECKS.labels(owner.namespace, owner.name, check.verdict.value).inc()
    for event in decided.events:
        if event.reason in ("Promoted", "RolledBack"):
            operator_metrics.OUTCOMES.labels(owner.namespace, owner.name, event.reason).inc()

    for write in decided.writes:
        obj = write.obj
        kind, name = obj["kind"], obj["metadata"]["name"]
        if write.scale_only:
            kube.apply(obj, manager=SCALE_MANAGER)
            log.info("%s %s/%s scaled to %s", kind, owner.namespace, name, obj["spec"]["replicas"])
        else:
            kube.apply(obj)
            done = "configured" if (kind, name) in seen.children else "created"
            log.info("%s %s/%s %s", kind, owner.namespace, name, done)
        out.writes += 1
        if write.repair:
            out.events.append(Event("Normal", "Repaired", write.repair))
    for kind, name in decided.delete:
        kube.delete(kind, owner.namespace, name)
        out.writes += 1
        out.events.append(Event("Normal", "Deleted", f"deleted {kind} {name} (no longer needed)"))
    _sync_status(kube, owner, stored, status_before, status, out)
    return out


def pending_action(requested: str | None, handled: str | None) -> Action | None:
    """The user's command in the action annotation, if it was not acted on yet.

    >>> pending_action("promote@2026-01-01T00:00:00Z", None)
    'promote'
    >>> pending_action("promote@2026-01-01T00:00:00Z", "promote@2026-01-01T00:00:00Z") is None
    True
    """
    if not requested or requested == handled:
        return None
    verb = requested.partition("@")[0]
    for known in ACTIONS:
        if verb == known:
            return known
    return None


def _sync_status(
    kube: Kube,
    owner: Owner,
    stored: dict[str, Any],
    before: ModelDeploymentStatus,
    status: ModelDeploymentStatus,
    out: Reconciled,
) -> None:
    """Write the status if it differs from the stored one (compared as models: times by
    instant, whatever their spelling); serialised here, once."""
    if status == before:
        return
    wire = status.to_wire()
    # A merge patch keeps keys it does not mention: name the ones to drop with null.
    dropped = {key: None for key in stored if key not in wire}
    kube.patch_status(owner.namespace, owner.name, {**dropped, **wire})
    log.info("ModelDeployment %s/%s status updated", owner.namespace, owner.name)
    out.writes += 1
