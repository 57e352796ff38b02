"""One reconcile: observe → decide → act, always ending in a status sync.

Called by the kopf handlers for events and on the resync timer; idempotent, so running it
twice, or after a restart, does no harm. It writes only what differs from the live objects.

No input stops the status from being written: a write the API server refuses is carried on
past and reported (Degraded, an Event, a metric; core/failures.py), a refused status is
replaced by one saying so, and the caller backs off by `Reconciled.failed`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, ParamSpec

from pydantic import ValidationError

from modeldeploy.api.action import action_problem
from modeldeploy.api.hooks import HookVerdict
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus, Phase, fit_handled_action
from modeldeploy.core.actions import impossible_action, pending_action, verb
from modeldeploy.core.conditions import ConditionUpdate, set_conditions
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.digests import wanted
from modeldeploy.core.events import Event
from modeldeploy.core.failures import Failure, degraded
from modeldeploy.core.gate import wanted as signatures_wanted
from modeldeploy.core.live import LiveChildren
from modeldeploy.core.naming import ACTION_ANNOTATION
from modeldeploy.core.notifications import notices
from modeldeploy.core.plan import plan, target_revision
from modeldeploy.core.rollout import ACTIONS, Action, analysis_due
from modeldeploy.core.settings import Settings
from modeldeploy.runtime import operator_metrics
from modeldeploy.runtime.errors import KubeError
from modeldeploy.runtime.kube import SCALE_MANAGER, Kube
from modeldeploy.runtime.notify import Notifier, shared_notifier
from modeldeploy.runtime.providers import MetricsProviders
from modeldeploy.runtime.webhooks import WebhookRunner, shared_runner

log = logging.getLogger(__name__)
P = ParamSpec("P")


@dataclass
class Reconciled:
    """What one reconcile did and asks of its caller: Events to post, how many writes it sent
    (none: everything was in place), how many the API server refused (the caller backs off),
    and when it must run again at the latest."""

    events: list[Event] = field(default_factory=list)
    writes: int = 0
    failed: int = 0
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
        operator_metrics.RECONCILES.labels(result="failed" if reconciled.failed else "ok").inc()
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
    webhooks: WebhookRunner | None = None,
    notifier: Notifier | None = None,
) -> Reconciled:
    """`webhooks` and `notifier`: where webhook hooks' calls and notifications go, off this
    thread (the process's own unless given)."""
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
        return _refused(kube, owner, stored, status_before, "InvalidSpec", message, now,
                        generation, out)  # fmt: skip

    seen = LiveChildren.index(children, spec, owner.namespace, kube.exists)
    requested = pending_action(
        (meta.get("annotations") or {}).get(ACTION_ANNOTATION), status_before.handled_action
    )
    named = verb(requested) if requested else None
    action: Action | None = next((a for a in ACTIONS if a == named), None)
    check = None
    target = target_revision(owner, spec, settings)
    if providers and analysis_due(spec, status_before, target, seen.revisions, now):
        stable = status_before.stable_revision.name if status_before.stable_revision else None
        check = providers.check(owner.namespace, owner.name, spec.rollout.analysis, target,
                                stable, status_before.current_step or 0, now)  # fmt: skip
    # The served model's digest (core/digests.py): read once per revision, its pods all Ready.
    digests = wanted(status_before, seen.revisions) if providers else []
    reads = providers.digests.read(kube, owner.namespace, owner.name, digests) if providers else {}
    # The signature gate (core/gate.py): the candidate's and the stable revision's model
    # signatures, read once per revision, before the candidate takes any traffic.
    pair = signatures_wanted(status_before, target, seen.revisions) if providers else None
    signatures = providers.signatures.read(kube, owner.namespace, owner.name, *pair) if (
        providers and pair
    ) else None  # fmt: skip
    runner = webhooks or shared_runner()
    called = runner.results(owner.uid)  # webhook hooks' verdicts, made off the loop
    try:
        decided = plan(owner, spec, generation, status_before, seen, settings, now,
                       check=check, action=action, webhooks=called, digests=reads,
                       signatures=signatures)  # fmt: skip
    except ValidationError as exc:  # a value the status model cannot hold: a bug, said so
        log.exception("planning ModelDeployment %s/%s", owner.namespace, owner.name)
        message = "; ".join(
            f"status.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        return _refused(kube, owner, stored, status_before, "StatusInvalid", message, now,
                        generation, out)  # fmt: skip
    status = decided.status
    if requested:
        # Recorded as handled (shortened when long, so the status always holds it): a refused
        # annotation is reported once, not on every reconcile.
        status = status.model_copy(update={"handled_action": fit_handled_action(requested)})
        if action is None:
            message = f"{action_problem(requested)}; got {requested[:80]!r}, ignored"
            out.events.append(Event("Warning", "InvalidAction", message))
        elif impossible := impossible_action(action, status_before, target):
            out.events.append(impossible)
    out.events.extend(decided.events)
    out.wake_at = decided.wake_at
    operator_metrics.record_status(owner.namespace, owner.name, status)
    if check is not None:
        operator_metrics.CHECKS.labels(owner.namespace, owner.name, check.verdict.value).inc()
    for event in decided.events:
        if event.reason in ("Promoted", "RolledBack"):
            operator_metrics.OUTCOMES.labels(owner.namespace, owner.name, event.reason).inc()

    failures: list[Failure] = []
    for write in decided.writes:
        obj = write.obj
        kind, name = obj["kind"], obj["metadata"]["name"]
        try:
            if write.scale_only:
                kube.apply(obj, manager=SCALE_MANAGER)
                replicas = obj["spec"]["replicas"]
                log.info("%s %s/%s scaled to %s", kind, owner.namespace, name, replicas)
            else:
                kube.apply(obj)
                done = "configured" if (kind, name) in seen.children else "created"
                log.info("%s %s/%s %s", kind, owner.namespace, name, done)
        except KubeError as exc:  # the other children do not depend on this one: go on
            failures.append(_failed("ApplyFailed", kind, name, exc))
            continue
        out.writes += 1
        if write.repair:
            out.events.append(Event("Normal", "Repaired", write.repair))
    for kind, name in decided.delete:
        try:
            kube.delete(kind, owner.namespace, name)
        except KubeError as exc:
            failures.append(_failed("DeleteFailed", kind, name, exc))
            continue
        out.writes += 1
        out.events.append(Event("Normal", "Deleted", f"deleted {kind} {name} (no longer needed)"))
    status, reported = degraded(status_before, status, failures, now, generation)
    out.events.extend(reported)
    out.failed += len(failures)
    _sync_status(kube, owner, stored, status_before, status, out, now, generation)
    # Calls and notices leave once the status names their runs and outcome; neither is waited on.
    runner.submit(owner.uid, owner.namespace, decided.webhook_calls, kube.secret_value)
    runner.forget(owner.uid, [(r.phase, r.name, r.revision) for r in status_before.hooks
                              if r.verdict != HookVerdict.RUNNING])  # fmt: skip
    (notifier or shared_notifier()).submit(
        owner.namespace, notices(owner, spec, status, out.events, now), kube.secret_value
    )
    return out


def _refused(
    kube: Kube,
    owner: Owner,
    stored: dict[str, Any],
    before: ModelDeploymentStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
    out: Reconciled,
) -> Reconciled:
    """Nothing can be planned: the stored status, saying why (Degraded, phase Failed), with a
    Warning Event when that is news. A spec change brings the next reconcile."""
    conditions = set_conditions(
        before.conditions, [ConditionUpdate("Degraded", "True", reason, message)], now, generation
    )
    failed = before.model_copy(update={
        "observed_generation": generation, "phase": Phase.FAILED, "conditions": conditions,
    })  # fmt: skip
    if failed.conditions != before.conditions:
        out.events.append(Event("Warning", reason, message))
    _sync_status(kube, owner, stored, before, failed, out, now, generation)
    return out


def _failed(reason: Literal["ApplyFailed", "DeleteFailed"], kind: str, name: str,
            exc: KubeError) -> Failure:  # fmt: skip
    log.warning("%s", exc)
    operator_metrics.APPLY_FAILURES.labels(kind=kind).inc()
    return Failure(reason, kind, name, exc.answer)


def _sync_status(
    kube: Kube,
    owner: Owner,
    stored: dict[str, Any],
    before: ModelDeploymentStatus,
    status: ModelDeploymentStatus,
    out: Reconciled,
    now: datetime,
    generation: int,
) -> None:
    """Write the status if it differs from the stored one (compared as models: times by
    instant, whatever their spelling); serialised here, once.

    A status the API server refuses is replaced by the stored one saying so (Degraded,
    StatusRejected, with the server's answer), which it accepted before: the user always
    learns why the status stopped moving.

    Except a Conflict (409): the write named the resourceVersion this decision was read at
    (Kube.for_version) and the object has changed since. Nothing is wrong with the object: the
    decision is dropped with its Events (the next one decides them again, once) and the
    object is reconciled again on the next tick, from its newer version."""
    if status == before:
        return
    try:
        _patch_status(kube, owner, stored, status)
    except KubeError as exc:
        if exc.status == 409:
            _conflict(owner, out, now, exc)
            return
        out.failed += 1
        failure = _failed_status(owner, exc)
        instead, reported = degraded(before, before, [failure], now, generation)
        out.events.extend(reported)
        if instead != before:
            try:
                _patch_status(kube, owner, stored, instead)
            except KubeError as again:
                if again.status == 409:
                    out.failed -= 1  # the refusal was decided on a stale read too
                    _conflict(owner, out, now, again)
                    return
                _failed_status(owner, again)
                return
        else:
            return
    out.writes += 1


def _conflict(owner: Owner, out: Reconciled, now: datetime, exc: KubeError) -> None:
    """A status decided on a stale read, refused: decide again soon, report nothing."""
    log.info("ModelDeployment %s/%s changed since it was read (%s): deciding again",
             owner.namespace, owner.name, exc.answer)  # fmt: skip
    operator_metrics.STATUS_CONFLICTS.inc()
    out.events.clear()
    out.wake_at = now


def _failed_status(owner: Owner, exc: KubeError) -> Failure:
    log.warning("%s", exc)
    operator_metrics.APPLY_FAILURES.labels(kind="ModelDeployment").inc()
    return Failure("StatusRejected", "ModelDeployment", f"{owner.name} (status)", exc.answer)


def _patch_status(
    kube: Kube, owner: Owner, stored: dict[str, Any], status: ModelDeploymentStatus
) -> None:
    wire = status.to_wire()
    # A merge patch keeps keys it does not mention: name the ones to drop with null.
    dropped = {key: None for key in stored if key not in wire}
    kube.patch_status(owner.namespace, owner.name, {**dropped, **wire})
    log.info("ModelDeployment %s/%s status updated", owner.namespace, owner.name)
