"""The decision: from spec, previous status and observations to desired children and status.

`plan()` is a pure function of plain data (no clock, no API): the reconcile shell observes,
calls it, and carries out what it returns. Everything a user could ask "why did it do that?"
about is decided here and covered by unit tests.

This is the reconcile core: revisions, the stable side and the Immediate switch (the new
revision starts at full size, takes over once all its pods are ready, and the previous one is
scaled to zero after scaleDownDelay). Progressive strategies plug in at `_next_revisions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import HISTORY_LIMIT, ModelDeploymentStatus, Phase
from modeldeploy.conditions import ConditionUpdate, set_conditions, timestamp
from modeldeploy.desired.deployment import build_deployment
from modeldeploy.desired.owner import Owner
from modeldeploy.desired.scaling import build_hpa, build_pdb
from modeldeploy.desired.services import build_services
from modeldeploy.durations import parse_duration
from modeldeploy.naming import entry_service, label_selector, owner_selector, revision_name
from modeldeploy.revision import serving_template, template_hash
from modeldeploy.settings import Settings
from modeldeploy.state import Observed, RevisionState


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on the ModelDeployment: what `kubectl describe md` shows."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Plan:
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)
    """(kind, name) of children that no longer belong."""
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    wake_at: datetime | None = None
    """When a decision depends on time (a scale-down delay) rather than on a change in the
    cluster: the next reconcile must not be skipped after this moment."""


@dataclass
class _Roles:
    stable: str | None
    canary: str | None
    previous: str | None
    promoted_at: datetime | None


def target_revision(owner: Owner, spec: ModelDeploymentSpec, settings: Settings) -> str:
    """The revision the spec asks for now."""
    return revision_name(owner.name, template_hash(serving_template(spec, settings)))


def plan(
    owner: Owner,
    spec: ModelDeploymentSpec,
    generation: int,
    status: ModelDeploymentStatus,
    observed: Observed,
    settings: Settings,
    now: datetime,
) -> Plan:
    out = Plan()
    target = target_revision(owner, spec, settings)
    revisions = observed.revisions
    history = [h.to_wire() for h in status.history]
    roles = _Roles(
        stable=_alive(status.stable_revision.name if status.stable_revision else None, revisions),
        canary=None,
        previous=_alive(
            status.previous_revision.name if status.previous_revision else None, revisions
        ),
        promoted_at=status.last_promotion_time,
    )
    blocked = bool(observed.problems) and target not in revisions
    # The watch cache may not show a Deployment applied a moment ago: a revision the status
    # already names is not new, so its creation is announced once.
    known = {r.name for r in (status.stable_revision, status.canary_revision) if r}
    if not blocked:
        if target not in revisions and target not in known:
            out.events.append(
                Event(
                    "Normal", "RevisionCreated", f"created revision {target} (model {_model(spec)})"
                )
            )
            history.append(_history(now, target, spec, "Deployed", "new serving template"))
        _next_revisions(roles, target, revisions, spec, now, out, history)

    wake: list[datetime] = []
    replicas = _replicas(spec, roles, target, revisions, now, blocked, wake)
    for name, count in replicas.items():
        state = revisions.get(name)
        if name == target and not blocked:
            out.apply.append(build_deployment(owner, spec, settings, name, count))
        elif state is not None and state.replicas != count:
            # Old revisions keep their own template; only their scale changes.
            out.apply.append(_scale_only(owner, name, count))
            if count == 0:
                out.events.append(Event("Normal", "ScaledDown", f"scaled revision {name} to 0"))
    out.delete.extend(("Deployment", n) for n in _expired(roles, target, revisions, spec))

    if roles.stable:
        out.apply.extend(build_services(owner, roles.stable, roles.canary))
        if spec.autoscaling:
            out.apply.append(build_hpa(owner, spec.autoscaling, roles.stable))
        out.apply.append(build_pdb(owner))
    if not spec.autoscaling and ("HorizontalPodAutoscaler", owner.name) in observed.children:
        out.delete.append(("HorizontalPodAutoscaler", owner.name))

    out.status = _status(owner, spec, generation, status, observed, roles, target, history, now)
    if observed.problems:
        wake.append(now)  # what fixes a problem (a new Secret) is not watched: keep checking
    out.wake_at = min(wake, default=None)
    degraded_before = next((c for c in status.conditions if c.type == "Degraded"), None)
    for problem in observed.problems:
        message = f"{problem.field}: {problem.message}"
        if degraded_before is None or message not in degraded_before.message:
            out.events.append(Event("Warning", problem.reason, message))
    return out


def _alive(name: str | None, revisions: dict[str, RevisionState]) -> str | None:
    return name if name and name in revisions else None


def _model(spec: ModelDeploymentSpec) -> str:
    return spec.model.version or spec.model.uri


def _history(
    now: datetime, revision: str, spec: ModelDeploymentSpec, event: str, message: str
) -> dict[str, Any]:
    entry = {
        "time": timestamp(now),
        "revision": revision,
        "modelUri": spec.model.uri,
        "event": event,
        "message": message,
    }
    if spec.model.version:
        entry["modelVersion"] = spec.model.version
    return entry


def _next_revisions(
    roles: _Roles,
    target: str,
    revisions: dict[str, RevisionState],
    spec: ModelDeploymentSpec,
    now: datetime,
    out: Plan,
    history: list[dict[str, Any]],
) -> None:
    """Immediate strategy: the first revision is stable at once; a later one takes over when
    every one of its pods is ready."""
    if roles.stable is None:
        roles.stable = target
        return
    if target == roles.stable:
        return
    roles.canary = target
    state = revisions.get(target)
    if state is not None and state.fully_ready:
        out.events.append(
            Event(
                "Normal",
                "Promoted",
                f"revision {target} (model {_model(spec)}) now serves all traffic; "
                + (
                    f"{roles.stable} stops now"
                    if spec.rollout.traffic_routing.replica_ratio is not None
                    else f"{roles.stable} stops after {spec.rollout.scale_down_delay}"
                ),
            )
        )
        history.append(_history(now, target, spec, "Promoted", "all pods ready"))
        roles.previous, roles.stable, roles.canary = roles.stable, target, None
        roles.promoted_at = now


def _replicas(
    spec: ModelDeploymentSpec,
    roles: _Roles,
    target: str,
    revisions: dict[str, RevisionState],
    now: datetime,
    blocked: bool,
    wake: list[datetime],
) -> dict[str, int | None]:
    """Replica count per revision; None leaves it to the HPA.

    With autoscaling the stable count is whatever the HPA set (mirrored, so applying never
    fights it), and a new revision starts at that same size: pre-scaled to current demand.
    """
    live = revisions.get(roles.stable or "")
    demand = live.replicas if live and spec.autoscaling else _base_replicas(spec)
    counts: dict[str, int | None] = {}
    for name in revisions:
        counts[name] = 0
    if roles.previous and roles.promoted_at:
        # Behind one entry Service (replicaRatio) every running pod takes traffic, so the old
        # revision stops at once; only a router (gatewayAPI) can keep it warm but idle.
        delay = timedelta(seconds=parse_duration(spec.rollout.scale_down_delay))
        if spec.rollout.traffic_routing.replica_ratio is not None:
            delay = timedelta(0)
        still_up = now - roles.promoted_at < delay
        previous = revisions[roles.previous]
        counts[roles.previous] = previous.replicas if still_up else 0
        if still_up and previous.replicas:
            wake.append(roles.promoted_at + delay)
    if roles.stable:
        counts[roles.stable] = max(demand, _base_replicas(spec))
    if roles.canary:
        counts[roles.canary] = max(demand, _base_replicas(spec))
    if blocked:
        counts.pop(target, None)
    return counts


def _base_replicas(spec: ModelDeploymentSpec) -> int:
    return spec.autoscaling.min_replicas if spec.autoscaling else spec.serving.replicas


def _expired(
    roles: _Roles, target: str, revisions: dict[str, RevisionState], spec: ModelDeploymentSpec
) -> list[str]:
    """Old revisions beyond revisionHistoryLimit, oldest first."""
    active = {roles.stable, roles.canary, roles.previous, target}
    old = [r for r in revisions.values() if r.name not in active]
    old.sort(key=lambda r: (r.created or datetime.min, r.name), reverse=True)
    return [r.name for r in old[spec.revision_history_limit :]]


def _scale_only(owner: Owner, name: str, replicas: int | None) -> dict[str, Any]:
    """An apply that owns nothing of an old revision but its replica count.

    Sent under a field manager of its own (see kube.SCALE_MANAGER): applied under the main
    manager, it would drop the pod template that manager owns from the revision's Deployment.
    """
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": owner.namespace},
        "spec": {"replicas": replicas},
    }


def _revision_ref(
    name: str, revisions: dict[str, RevisionState], spec: ModelDeploymentSpec, target: str
) -> dict[str, Any]:
    state = revisions.get(name)
    version: str | None
    uri: str | None
    if name == target or state is None:
        version, uri = spec.model.version, spec.model.uri
    else:
        version, uri = state.model_version, state.model_uri
    ref: dict[str, Any] = {"name": name}
    if version:
        ref["modelVersion"] = version
    if uri:
        ref["modelUri"] = uri
    return ref


def _status(
    owner: Owner,
    spec: ModelDeploymentSpec,
    generation: int,
    previous: ModelDeploymentStatus,
    observed: Observed,
    roles: _Roles,
    target: str,
    history: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    revisions = observed.revisions
    stable = revisions.get(roles.stable or "")
    canary = revisions.get(roles.canary or "")
    replicas = sum(r.replicas for r in revisions.values())
    ready = sum(r.ready_replicas for r in revisions.values())
    failed = [
        r for r in revisions.values() if r.failed_reason and r.name in (roles.stable, roles.canary)
    ]

    if observed.problems:
        degraded = ConditionUpdate(
            "Degraded",
            "True",
            observed.problems[0].reason,
            "; ".join(f"{p.field}: {p.message}" for p in observed.problems),
        )
    elif failed:
        degraded = ConditionUpdate(
            "Degraded",
            "True",
            "RevisionFailed",
            f"revision {failed[0].name}: {failed[0].failed_reason}",
        )
    else:
        degraded = ConditionUpdate("Degraded", "False", "AsExpected", "")

    if stable and stable.ready_replicas > 0:
        ready_cond = ConditionUpdate(
            "Ready",
            "True",
            "Serving",
            f"{stable.ready_replicas}/{stable.replicas} pods of revision {stable.name} ready",
        )
    elif stable and stable.replicas == 0 and _base_replicas(spec) == 0:
        ready_cond = ConditionUpdate("Ready", "False", "ScaledToZero", "replicas is 0")
    else:
        ready_cond = ConditionUpdate(
            "Ready", "False", "PodsNotReady", "waiting for the serving pods to become ready"
        )

    if roles.canary:
        pods = f"{canary.ready_replicas}/{canary.replicas} pods ready" if canary else "creating"
        progressing = ConditionUpdate(
            "Progressing", "True", "NewRevision", f"revision {roles.canary}: {pods}"
        )
    elif (roles.stable and roles.stable not in revisions) or (
        stable and not stable.fully_ready and stable.replicas > 0
    ):
        progressing = ConditionUpdate(
            "Progressing", "True", "Scaling", "waiting for the stable revision's pods"
        )
    else:
        progressing = ConditionUpdate("Progressing", "False", "Complete", "")

    if degraded.status == "True":
        phase = Phase.FAILED
    elif spec.paused:
        phase = Phase.PAUSED
    elif progressing.status == "True" or ready_cond.status != "True":
        phase = Phase.PROGRESSING
    else:
        phase = Phase.HEALTHY

    conditions = set_conditions(
        [c.to_wire() for c in previous.conditions],
        [ready_cond, progressing, degraded],
        now,
        generation,
    )
    model = spec.model.name or owner.name
    scheme = "https" if spec.serving.tls else "http"
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": phase.value,
        "conditions": conditions,
        "canaryWeight": 0,
        "replicas": replicas,
        "readyReplicas": ready,
        "selector": label_selector(owner_selector(owner.name)),
        "url": f"{scheme}://{entry_service(owner.name)}.{owner.namespace}.svc/v2/models/{model}",
        "history": history[-HISTORY_LIMIT:],
    }
    if roles.stable:
        status["stableRevision"] = _revision_ref(roles.stable, revisions, spec, target)
    if roles.canary:
        status["canaryRevision"] = _revision_ref(roles.canary, revisions, spec, target)
    if roles.previous:
        status["previousRevision"] = _revision_ref(roles.previous, revisions, spec, "")
    if roles.promoted_at:
        status["lastPromotionTime"] = timestamp(roles.promoted_at)
    return status
