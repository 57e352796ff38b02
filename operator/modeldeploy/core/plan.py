"""The decision: from spec, previous status and observations to desired children and status.

`plan()` is a pure function of plain data (no clock, no API): the reconcile shell observes,
calls it, and carries out what it returns. Everything a user could ask "why did it do that?"
about is decided here and covered by unit tests.

The rollout state machine (rollout.py) decides who serves and at what weight; the traffic
provider (traffic/) turns the weight into replica counts and routing objects; this module
turns all of that into children, deletions and the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from modeldeploy.api.spec import ModelDeploymentSpec, Strategy
from modeldeploy.api.status import (
    HISTORY_LIMIT,
    AnalysisCheck,
    HistoryEntry,
    HistoryEvent,
    ModelDeploymentStatus,
    Phase,
    RevisionRef,
)
from modeldeploy.core.children import DEPLOYMENT
from modeldeploy.core.conditions import ConditionUpdate, set_conditions, whole_seconds
from modeldeploy.core.desired.deployment import build_deployment
from modeldeploy.core.desired.optional import optional_children, unwanted
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.desired.scaling import build_hpa, build_pdb, pdb_exists
from modeldeploy.core.desired.services import build_services
from modeldeploy.core.digests import Digest, Reports, backfill, judge, recorded
from modeldeploy.core.events import Event
from modeldeploy.core.gate import SignatureReads
from modeldeploy.core.gate import judge as judge_signature
from modeldeploy.core.hooks import (
    WEBHOOK_POLL,
    HookBook,
    HookContext,
    HookKey,
    WebhookCall,
    WebhookResult,
)
from modeldeploy.core.live import LiveChildren, LiveRevision
from modeldeploy.core.naming import (
    canary_service,
    entry_service,
    label_selector,
    owner_selector,
    revision_name,
)
from modeldeploy.core.revision import serving_template, template_hash
from modeldeploy.core.rollout import Action, RolloutState, decide
from modeldeploy.core.settings import Settings
from modeldeploy.core.traffic import ROUTED_KINDS, Split, router_for
from modeldeploy.core.writes import Write, writes


@dataclass
class Plan:
    """What reconcile must do: every decision made, none left for it to infer."""

    writes: list[Write] = field(default_factory=list)
    """Server-side applies of the children that differ from the live ones, in order."""
    delete: list[tuple[str, str]] = field(default_factory=list)
    """(kind, name) of children that no longer belong."""
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    """The status to write: the patch serialises it, once."""
    events: list[Event] = field(default_factory=list)
    wake_at: datetime | None = None
    """When a decision depends on time (a scale-down delay) rather than on a change in the
    cluster: the next reconcile must not be skipped after this moment."""
    webhook_calls: list[WebhookCall] = field(default_factory=list)
    """Webhook hooks' calls owed (core/hooks.py): the runtime makes each once, off the loop."""

    @property
    def apply(self) -> list[dict[str, Any]]:
        """The objects written, as sent."""
        return [w.obj for w in self.writes]


def target_revision(owner: Owner, spec: ModelDeploymentSpec, settings: Settings) -> str:
    """The revision the spec asks for now."""
    return revision_name(owner.name, template_hash(serving_template(spec, settings)))


def plan(
    owner: Owner,
    spec: ModelDeploymentSpec,
    generation: int,
    status: ModelDeploymentStatus,
    live: LiveChildren,
    settings: Settings,
    now: datetime,
    check: AnalysisCheck | None = None,
    action: Action | None = None,
    digests: Mapping[str, Reports] | None = None,
    webhooks: dict[HookKey, WebhookResult] | None = None,
    signatures: SignatureReads | None = None,
) -> Plan:
    """`digests`: what the pods of the revisions `digests.wanted` named reported, read since
    the last plan (revision → pod → sha256). `signatures`: the stable and candidate revisions'
    model signatures when `gate.wanted` asked for them (None: no signature check now)."""
    out = Plan()
    target = target_revision(owner, spec, settings)
    revisions = live.revisions
    found: dict[str, Digest] = {}
    for name, reports in (digests or {}).items():
        digest, findings = judge(name, reports, spec.model.sha256 if name == target else None)
        if digest:
            found[name] = digest
        out.events.extend(findings)
    served = {**recorded(status), **found}  # revision → the bytes it served
    history = backfill(status.history, found)
    blocked = bool(live.problems) and target not in revisions
    url = f"{_scheme(spec)}://{entry_service(owner.name)}.{owner.namespace}.svc/v2/models/"
    context = HookContext(
        stable=status.stable_revision.name if status.stable_revision else target,
        preview_url=preview_url(owner, spec),
        url=url + (spec.model.name or owner.name),
    )
    book = HookBook.open(owner, spec, context, status.hooks, live.children, now, webhooks)
    if blocked:
        rollout = RolloutState(
            stable=_alive(status.stable_revision.name if status.stable_revision else None,
                          revisions),
            previous=_alive(status.previous_revision.name if status.previous_revision else None,
                            revisions),
            promoted_at=status.last_promotion_time,
        )  # fmt: skip
    else:
        verdict = (
            judge_signature(signatures, spec.rollout.allow_signature_change)
            if signatures is not None and signatures.canary == target
            else None
        )
        rollout = decide(spec, status, target, revisions, check, action, now,
                         preview_url(owner, spec), book.run, verdict)  # fmt: skip
    # The watch cache may not show a Deployment applied a moment ago: a revision the status
    # already names is not new, so its creation is announced once.
    known = {r.name for r in (status.stable_revision, status.canary_revision) if r}
    serving = target in (rollout.stable, rollout.canary)
    if serving and target not in revisions and target not in known:
        out.events.append(Event("Normal", "RevisionCreated",
                                f"created revision {target} (model {_model(spec)})"))  # fmt: skip
        ref = _revision_ref(target, revisions, spec, target, served)
        history.append(_history(now, ref, "Deployed", "new serving template"))
    out.events.extend(rollout.events)
    for revision, event, message in rollout.history:
        ref = _revision_ref(revision, revisions, spec, target, served)
        history.append(_history(now, ref, event, message))
        if event == "Promoted":
            book.run("postPromotion", revision)
        elif event == "RolledBack":
            book.run("onRollback", revision)
    out.events.extend(book.events)

    wake: list[datetime] = [rollout.wake_at] if rollout.wake_at else []
    router = router_for(spec.rollout.traffic_routing)
    stable_state = revisions.get(rollout.stable or "")
    demand = (
        max(stable_state.replicas, _base_replicas(spec))
        if stable_state and spec.autoscaling
        else _base_replicas(spec)
    )
    outgoing = _outgoing(rollout, revisions, demand)
    if outgoing and spec.autoscaling:  # the incoming side takes over the load the HPA sized
        demand = max(demand, revisions[outgoing].replicas)
    canary_state = revisions.get(rollout.canary or "")
    answers = canary_state is not None and canary_state.ready_replicas > 0
    live_weight = rollout.weight if answers and not rollout.hold_traffic else 0
    match = spec.rollout.match if spec.rollout.strategy == Strategy.AB_TEST else None
    # Size the canary for its step's weight from the start (it must come up to be judged), but
    # route to it only once it has a ready pod.
    sizing = router.split(owner, demand, rollout.weight, rollout.canary, match, rollout.full_size)
    split = router.split(owner, demand, live_weight, rollout.canary, match, rollout.full_size)
    weight = split.weight

    delay = router.scale_down_delay(spec.rollout.scale_down_delay.delta)
    replicas = _replicas(rollout, revisions, now, wake, demand, sizing.canary_replicas, delay)
    if outgoing:
        replicas[outgoing] = revisions[outgoing].replicas  # serves until the other is ready
    wanted: list[tuple[dict[str, Any], bool]] = []  # (object, scale only)
    for name, count in replicas.items():
        state = revisions.get(name)
        if name == target and serving:
            wanted.append((build_deployment(owner, spec, settings, name, count), False))
        elif state is not None and state.replicas != count:
            # Old revisions keep their own template; only their scale changes.
            wanted.append((_scale_only(owner, name, count), True))
            if count == 0:
                out.events.append(Event("Normal", "ScaledDown", f"scaled revision {name} to 0"))
    out.delete.extend((DEPLOYMENT.kind, n) for n in _expired(rollout, target, revisions, spec))

    if rollout.stable:
        answering = outgoing or rollout.stable  # whom the entry and stable Services select
        weighted = rollout.canary if weight > 0 else None
        entry = router.entry_selector(owner.name, answering, weighted)
        services = build_services(owner, answering, rollout.canary, entry=entry)
        scaling = [build_hpa(owner, spec.autoscaling, rollout.stable)] if spec.autoscaling else []
        pdb = [build_pdb(owner)] if pdb_exists(spec.serving.replicas, spec.autoscaling) else []
        for obj in [*services, *split.objects, *scaling, *pdb]:
            wanted.append((obj, False))
    wanted.extend((job, False) for job in book.jobs)
    # Children that exist only while a rule wants them (desired/optional.py): one no longer
    # wanted is deleted.
    optional = optional_children(owner.name, ROUTED_KINDS)
    out.delete.extend(unwanted(optional, [obj for obj, _ in wanted], live.children))
    out.writes = writes(wanted, live.children, status)

    out.status = _status(
        owner, spec, generation, status, live, rollout, target, history, now, split, outgoing,
        served,
    )  # fmt: skip
    out.status = out.status.model_copy(update={"hooks": book.kept()})
    out.webhook_calls = book.calls
    if book.calls:
        wake.append(now + WEBHOOK_POLL)  # read the call's result as soon as it is in
    if live.problems:
        wake.append(now)  # what fixes a problem (a new Secret) is not watched: keep checking
    out.wake_at = min(wake, default=None)
    degraded_before = next((c for c in status.conditions if c.type == "Degraded"), None)
    for problem in live.problems:
        message = f"{problem.field}: {problem.message}"
        if degraded_before is None or message not in degraded_before.message:
            out.events.append(Event("Warning", problem.reason, message))
    return out


def _scheme(spec: ModelDeploymentSpec) -> str:
    return "https" if spec.serving.tls else "http"


def preview_url(owner: Owner, spec: ModelDeploymentSpec) -> str:
    """Where a candidate is reached directly, before and besides live traffic: NAME-canary."""
    model = spec.model.name or owner.name
    return f"{_scheme(spec)}://{canary_service(owner.name)}.{owner.namespace}.svc/v2/models/{model}"


def _alive(name: str | None, revisions: dict[str, LiveRevision]) -> str | None:
    return name if name and name in revisions else None


def _model(spec: ModelDeploymentSpec) -> str:
    return spec.model.version or spec.model.uri


def _history(
    now: datetime, revision: RevisionRef, event: HistoryEvent, message: str
) -> HistoryEntry:
    return HistoryEntry(time=whole_seconds(now), revision=revision.name,
                        model_version=revision.model_version, model_uri=revision.model_uri,
                        model_sha256=revision.model_sha256, event=event,
                        message=message)  # fmt: skip


def _outgoing(rollout: RolloutState, revisions: dict[str, LiveRevision], demand: int) -> str | None:
    """The revision that keeps serving while the one just made stable comes up (an undo, or a
    switch seen before all the new pods were ready): the previous revision, while it has ready
    pods, more of them than the new stable one, and the new one is short of its size. Traffic
    moves, and the previous side shrinks, only once the new side is Ready at the stable size,
    so no switch is ever an outage or a drop in capacity."""
    if not rollout.previous or not rollout.stable or rollout.previous == rollout.canary:
        return None  # (a retried revision is a candidate again: it takes its weight only)
    before, after = revisions.get(rollout.previous), revisions.get(rollout.stable)
    if before is None or before.ready_replicas == 0:
        return None
    ready = after.ready_replicas if after else 0
    return rollout.previous if ready < demand and ready < before.ready_replicas else None


def _replicas(
    rollout: RolloutState,
    revisions: dict[str, LiveRevision],
    now: datetime,
    wake: list[datetime],
    demand: int,
    canary_replicas: int,
    delay: timedelta,
) -> dict[str, int | None]:
    """Replica count per revision.

    The stable side keeps `demand` (the spec's count, or the HPA's, mirrored so that applying
    never fights it). The candidate gets what the traffic provider asks for its weight, and at
    least the full demand when it is about to take over (pre-scaled, so promotion never
    overwhelms it; the router sizes both).
    The previous revision stays up for `delay` after a promotion (the router's say).
    """
    counts: dict[str, int | None] = dict.fromkeys(revisions, 0)
    if rollout.previous and rollout.promoted_at and rollout.previous in revisions:
        # No delay means none: a clock that stepped back past the promotion must not keep
        # the previous revision up (found by the rollout property test).
        still_up = delay > timedelta(0) and now - rollout.promoted_at < delay
        previous = revisions[rollout.previous]
        counts[rollout.previous] = previous.replicas if still_up else 0
        if still_up and previous.replicas:
            wake.append(rollout.promoted_at + delay)
    if rollout.stable:
        counts[rollout.stable] = demand
    if rollout.canary:
        # The router's sizing, full size included (at least `demand`): a second rule here
        # shrank a canary whose last weight needed more pods than the stable side, so the
        # share the status reported was not the share its pods got.
        counts[rollout.canary] = canary_replicas
    return counts


def _base_replicas(spec: ModelDeploymentSpec) -> int:
    return spec.autoscaling.min_replicas if spec.autoscaling else spec.serving.replicas


def _expired(
    rollout: RolloutState,
    target: str,
    revisions: dict[str, LiveRevision],
    spec: ModelDeploymentSpec,
) -> list[str]:
    """Old revisions beyond revisionHistoryLimit, oldest first."""
    active = {rollout.stable, rollout.canary, rollout.previous, rollout.rolled_back, target}
    old = [r for r in revisions.values() if r.name not in active]
    old.sort(key=lambda r: (r.created or datetime.min, r.name), reverse=True)
    return [r.name for r in old[spec.revision_history_limit :]]


def _scale_only(owner: Owner, name: str, replicas: int | None) -> dict[str, Any]:
    """An apply that owns nothing of an old revision but its replica count.

    Sent under a field manager of its own (see kube.SCALE_MANAGER): applied under the main
    manager, it would drop the pod template that manager owns from the revision's Deployment.
    """
    return {
        "apiVersion": DEPLOYMENT.api_version,
        "kind": DEPLOYMENT.kind,
        "metadata": {"name": name, "namespace": owner.namespace},
        "spec": {"replicas": replicas},
    }


def _revision_ref(
    name: str,
    revisions: dict[str, LiveRevision],
    spec: ModelDeploymentSpec,
    target: str,
    known: Mapping[str, Digest],
    weight: int | None = None,
) -> RevisionRef:
    """A revision with its model (from the spec for the one it names, else from the
    annotations on the revision's Deployment), the digest its pods reported once read, and
    its pods and traffic share (`weight`) when it is live."""
    state = revisions.get(name)
    version: str | None
    uri: str | None
    if name == target or state is None:
        version, uri = spec.model.version, spec.model.uri
    else:
        version, uri = state.model_version, state.model_uri
    ref = RevisionRef(
        name=name,
        model_version=version or None,
        model_uri=uri or None,
        replicas=state.replicas if state else None,
        ready_replicas=state.ready_replicas if state else None,
        weight=weight if state else None,
    )
    digest = known.get(name)
    return digest.on(ref) if digest else ref


def _status(
    owner: Owner,
    spec: ModelDeploymentSpec,
    generation: int,
    previous: ModelDeploymentStatus,
    live: LiveChildren,
    rollout: RolloutState,
    target: str,
    history: list[HistoryEntry],
    now: datetime,
    split: Split,
    outgoing: str | None,
    known: Mapping[str, Digest],
) -> ModelDeploymentStatus:
    revisions = live.revisions
    weight = split.weight
    stable = revisions.get(outgoing or rollout.stable or "")
    canary = revisions.get(rollout.canary or "")
    replicas = sum(r.replicas for r in revisions.values())
    ready = sum(r.ready_replicas for r in revisions.values())
    failed = [
        r
        for r in revisions.values()
        if r.failed_reason and r.name in (rollout.stable, rollout.canary)
    ]

    if rollout.degraded is not None and not live.problems:
        degraded = rollout.degraded
    elif live.problems:
        degraded = ConditionUpdate(
            "Degraded",
            "True",
            live.problems[0].reason,
            "; ".join(f"{p.field}: {p.message}" for p in live.problems),
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

    if outgoing:
        progressing = ConditionUpdate(
            "Progressing", "True", "Switching",
            f"revision {rollout.stable} is coming up; {outgoing} serves until its pods are "
            "ready",
        )  # fmt: skip
    elif rollout.progressing:
        progressing = rollout.progressing
    elif rollout.canary:
        pods = f"{canary.ready_replicas}/{canary.replicas} pods ready" if canary else "creating"
        share = f"; {split.effective_weight:.0f}% of traffic" if weight else ""
        step = (
            f"step {rollout.step + 1}/{len(spec.rollout.steps)}, "
            if rollout.step is not None and (spec.rollout.strategy == Strategy.CANARY)
            else ""
        )
        progressing = ConditionUpdate(
            "Progressing", "True", "NewRevision", f"revision {rollout.canary}: {step}{pods}{share}"
        )
    elif (rollout.stable and rollout.stable not in revisions) or (
        stable and not stable.fully_ready and stable.replicas > 0
    ):
        progressing = ConditionUpdate(
            "Progressing", "True", "Scaling", "waiting for the stable revision's pods"
        )
    else:
        progressing = ConditionUpdate("Progressing", "False", "Complete", "")

    if degraded.status == "True":
        phase = Phase.FAILED
    elif rollout.phase is not None:
        phase = rollout.phase
    elif spec.paused:
        phase = Phase.PAUSED
    elif progressing.status == "True" or ready_cond.reason not in ("Serving", "ScaledToZero"):
        # Scaled to zero on purpose is settled (Progressing says Complete), not in progress.
        phase = Phase.PROGRESSING
    else:
        phase = Phase.HEALTHY

    model = spec.model.name or owner.name
    scheme = "https" if spec.serving.tls else "http"
    candidate = rollout.canary is not None
    # Who answers the entry Service: the outgoing revision while a switch waits for the new
    # stable one, else the stable one; the canary takes `weight` of it.
    shares = {outgoing or rollout.stable or "": 100 - weight, rollout.canary or "": weight}

    def ref(name: str | None, target: str) -> RevisionRef | None:
        return (
            _revision_ref(name, revisions, spec, target, known, shares.get(name, 0))
            if name
            else None
        )

    return ModelDeploymentStatus(
        observed_generation=generation,
        phase=phase,
        conditions=set_conditions(
            previous.conditions, [ready_cond, progressing, degraded], now, generation
        ),
        canary_weight=weight,
        replicas=replicas,
        ready_replicas=ready,
        selector=label_selector(owner_selector(owner.name)),
        url=f"{scheme}://{entry_service(owner.name)}.{owner.namespace}.svc/v2/models/{model}",
        preview_url=preview_url(owner, spec) if candidate else None,
        history=history[-HISTORY_LIMIT:],
        stable_revision=ref(rollout.stable, target),
        canary_revision=ref(rollout.canary, target),
        previous_revision=ref(rollout.previous, ""),
        last_promotion_time=_whole_seconds(rollout.promoted_at),
        rolled_back_revision=ref(rollout.rolled_back, target),
        current_step=rollout.step if candidate else None,
        step_started_at=_whole_seconds(rollout.step_started_at) if candidate else None,
        analysis=rollout.analysis,
        handled_action=previous.handled_action,
    )


def _whole_seconds(time: datetime | None) -> datetime | None:
    return whole_seconds(time) if time else None
