"""The rollout state machine: which revision serves, at what weight, and what happens next.

A pure function of (spec, previous status, observed revisions, the newest analysis check, a
user action, now). All its state lives in the status it returns, so an operator restarted in
the middle of any step continues at the same step; nothing is kept in memory.

Strategies
- Canary: `steps` of setWeight/pause. The pause clock of a step starts once the canary has a
  ready pod; a step ends when its pause is over and the latest check since it began passed.
  After the last step the canary is scaled to the stable side's size, then takes over.
- BlueGreen: the candidate runs at full size without live traffic (whatever the router), reached
  only through NAME-canary, the preview Service; after `iterations` checks that passed on real
  traffic (requests sent to the preview) it takes over at once.
- ABTest: requests matching `match` go to the candidate; after `iterations` checks that passed
  on real traffic it is scaled up and takes over.
- Immediate: the candidate takes over as soon as all its pods are ready, without analysis.

Nothing is promoted on silence: a check counts as a pass only when the candidate answered at
least `minRequests` requests (and at least one) in its interval. Without such checks a BlueGreen
or ABTest rollout waits (Progressing reason AwaitingVerification) for traffic to the preview or
for `modeldeploy promote`; a Canary step does not advance.

Outcomes
- `failureLimit` failed checks in a row: rollback. Traffic returns to stable, the candidate is
  scaled to zero, and the revision is remembered in `rolledBackRevision` so it is not tried
  again until the spec changes or the user runs `modeldeploy retry`.
- Checks with too little traffic are Inconclusive, never Failed. After NO_DATA_INTERVALS of
  them in a row the rollout holds (phase Paused, reason NotEnoughData) and goes on by itself as
  soon as enough traffic arrives: quiet hours never roll a good release back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

from modeldeploy.api.hooks import HookPhase, HookVerdict
from modeldeploy.api.spec import INDEFINITE, ModelDeploymentSpec, Strategy
from modeldeploy.api.status import (
    AnalysisCheck,
    AnalysisStatus,
    HistoryEvent,
    ModelDeploymentStatus,
    Phase,
    Verdict,
)
from modeldeploy.core.conditions import ConditionUpdate, whole_seconds
from modeldeploy.core.events import Event
from modeldeploy.core.gate import REASON as INCOMPATIBLE
from modeldeploy.core.gate import GateVerdict, refusal
from modeldeploy.core.live import LiveRevision

NO_DATA_INTERVALS: Final = 10
"""Inconclusive checks in a row before a rollout reports that it is waiting for traffic."""
CHECKS_KEPT: Final = 10
Action = Literal["promote", "abort", "retry", "undo"]
Gate = Callable[[HookPhase, str], tuple[HookVerdict | None, str]]
"""Runs a phase's verification hooks for a revision (starting them once) and says their joint
verdict: None when the spec has none for the phase (core/hooks.py: HookBook.run)."""
ACTIONS: Final = ("promote", "abort", "retry", "undo")
SIGNATURE_RETRY: Final = timedelta(seconds=10)
"""How soon a candidate waiting for its signature check is looked at again."""


@dataclass
class RolloutState:
    """Who serves and what comes next; becomes part of the status."""

    stable: str | None
    canary: str | None = None
    previous: str | None = None
    promoted_at: datetime | None = None
    rolled_back: str | None = None
    weight: int = 0
    step: int | None = None
    step_started_at: datetime | None = None
    full_size: bool = False
    """The candidate runs at the stable side's size (BlueGreen, Immediate, before a switch)."""
    hold_traffic: bool = False
    """The candidate is sized for its step but takes no live traffic (preRollout hooks run)."""
    analysis: AnalysisStatus | None = None
    """The candidate's analysis record; None when no candidate is in progress."""
    phase: Phase | None = None
    """Set when the rollout decides the phase (Paused, RolledBack); else readiness decides."""
    progressing: ConditionUpdate | None = None
    degraded: ConditionUpdate | None = None
    """Set when the rollout itself is why the object is Degraded (a refused signature)."""
    events: list[Event] = field(default_factory=list)
    history: list[tuple[str, HistoryEvent, str]] = field(default_factory=list)
    """(revision, event, message) lines for the audit trail."""
    wake_at: datetime | None = None


def _alive(name: str | None, revisions: dict[str, LiveRevision]) -> str | None:
    return name if name and name in revisions else None


def analysis_due(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    target: str,
    revisions: dict[str, LiveRevision],
    now: datetime,
) -> bool:
    """Should the shell collect a check now? Only for a live candidate, once per interval."""
    if spec.rollout.strategy == Strategy.IMMEDIATE or spec.paused:
        return False
    canary = status.canary_revision
    if canary is None or canary.name != target or canary.name not in revisions:
        return False
    if revisions[canary.name].ready_replicas == 0:
        return False
    checks = status.analysis.checks if status.analysis else []
    if not checks:
        return True
    return now - checks[-1].time >= spec.rollout.analysis.interval.delta


def decide(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    target: str,
    revisions: dict[str, LiveRevision],
    check: AnalysisCheck | None,
    action: Action | None,
    now: datetime,
    preview_url: str | None = None,
    gate: Gate | None = None,
    signature: GateVerdict | None = None,
) -> RolloutState:
    """`preview_url`: where the candidate is reached directly (named in what a waiting rollout
    asks of the user). `gate`: runs verification hooks (none when not given). `signature`: the
    signature gate's verdict on the candidate (core/gate.py; None: no check is due)."""
    out = RolloutState(
        stable=_alive(status.stable_revision.name if status.stable_revision else None, revisions),
        previous=_alive(
            status.previous_revision.name if status.previous_revision else None, revisions
        ),
        promoted_at=status.last_promotion_time,
        rolled_back=status.rolled_back_revision.name if status.rolled_back_revision else None,
    )
    if action == "retry" and out.rolled_back:
        out.events.append(Event("Normal", "Retry", f"retrying revision {out.rolled_back}"))
        out.rolled_back = None
    if action == "undo":
        _undo(out, target, now)
        return out
    if out.stable is None:
        out.stable = target  # the first revision: nothing to compare it with
        return out
    if target == out.stable:
        out.rolled_back = None if out.rolled_back == target else out.rolled_back
        return out
    if (
        target == out.rolled_back
        and spec.rollout.allow_signature_change
        and (refusal(status, target) is not None)
    ):  # set aside only by the signature gate, which the spec now lets it past
        out.events.append(Event("Normal", "Retry", f"retrying revision {target}: "
                                "spec.rollout.allowSignatureChange is now true"))  # fmt: skip
        out.rolled_back = None
    if target == out.rolled_back:
        # Keep the record of the checks that failed it: what a user reads after a rollback.
        out.analysis = status.analysis
        out.phase = Phase.ROLLED_BACK
        out.progressing = ConditionUpdate(
            "Progressing", "False", "RolledBack",
            f"revision {target} was rolled back; change the spec or run `modeldeploy retry`",
        )  # fmt: skip
        out.degraded = refusal(status, target)
        if out.degraded is not None:
            out.progressing = ConditionUpdate("Progressing", "False", INCOMPATIBLE,
                                              out.degraded.message)  # fmt: skip
        return out

    out.canary = target
    fresh = status.canary_revision is None or status.canary_revision.name != target
    out.analysis = AnalysisStatus() if fresh or status.analysis is None else status.analysis
    out.step = 0 if fresh else (status.current_step or 0)
    out.step_started_at = None if fresh else status.step_started_at
    if fresh:
        started = f"rolling out revision {target} ({spec.rollout.strategy})"
        out.events.append(Event("Normal", "RolloutStarted", started))

    strategy = spec.rollout.strategy
    state = revisions.get(target)
    if action == "abort":
        _rollback(out, target, "aborted by the user (modeldeploy abort)")
        return out
    # Before hooks, pauses and `promote`: no traffic ever reaches a model its clients cannot
    # call, unless the spec says so (spec.rollout.allowSignatureChange).
    if signature is not None and _signature_gate(spec, out, target, signature, now):
        return out
    # `modeldeploy promote` is the user's verdict: it runs no hook.
    checked = gate if action != "promote" and not spec.paused else None
    if checked is not None:
        verdict, said = checked("preRollout", target)
        if verdict == HookVerdict.FAILED:
            _rollback(out, target, f"hook failed: {said}")
            return out
        if verdict == HookVerdict.RUNNING:
            out.weight = _weight(spec, out)
            out.hold_traffic = True
            out.full_size = strategy in (Strategy.BLUE_GREEN, Strategy.IMMEDIATE)
            out.progressing = ConditionUpdate(
                "Progressing", "True", "RunningHooks",
                f"revision {target} takes no live traffic until its preRollout hooks pass "
                f"(running: {said})",
            )  # fmt: skip
            return out
    if action == "promote" or strategy == Strategy.IMMEDIATE:
        out.full_size = True
        out.step = None
        if state is not None and state.fully_ready:
            if action != "promote" and _pre_promotion(out, target, checked) is not None:
                return out  # a prePromotion hook failed or runs
            reason = "promoted by the user" if action == "promote" else "all pods ready"
            _switch(out, target, reason, now)
        return out
    if spec.paused:
        out.weight = _weight(spec, out)
        out.phase = Phase.PAUSED
        out.progressing = ConditionUpdate(
            "Progressing", "Unknown", "Paused", "spec.paused is true: the rollout holds where it is"
        )
        return out

    ready = state is not None and state.ready_replicas > 0
    if ready and out.step_started_at is None:
        out.step_started_at = now  # a step's pause counts from when the canary can answer
    if check is not None:
        out.analysis = _record(out, check, spec)
        if out.analysis.consecutive_failures >= spec.rollout.analysis.failure_limit:
            _rollback(out, target, _failure_summary(check))
            return out
    interval = spec.rollout.analysis.interval.delta
    waiting = _waiting_for_data(out, interval, now)

    if strategy == Strategy.CANARY:
        _canary(spec, out, state, now, waiting, interval, gate)
    elif strategy in (Strategy.BLUE_GREEN, Strategy.AB_TEST):
        # BlueGreen checks the candidate at full size; ABTest as soon as it answers.
        out.full_size = strategy == Strategy.BLUE_GREEN
        due = state is not None and (state.fully_ready if out.full_size else ready)
        hooks = _pre_promotion(out, target, gate) if due else None
        if out.canary != target:  # a prePromotion hook failed: rolled back
            return out
        verified = _iterations_done(spec, out) or (
            due and hooks is None and _hooks_passed(gate, target)
        )
        if verified and hooks is None:
            out.full_size = True
            if state is not None and state.fully_ready:
                _switch(out, target, _verified_by(spec, out, gate, target), now)
                return out
        elif ready and out.progressing is None:
            _awaiting_verification(spec, out, preview_url)
    if out.canary != target:  # switched by _canary
        return out
    if ready:
        next_check = _next_check(out, interval, now)
        out.wake_at = min(out.wake_at, next_check) if out.wake_at else next_check
    if waiting and out.canary and strategy == Strategy.CANARY:
        out.phase = Phase.PAUSED
        out.progressing = ConditionUpdate(
            "Progressing", "Unknown", "NotEnoughData",
            f"holding at {out.weight}%: the last {NO_DATA_INTERVALS} checks saw fewer than "
            f"{spec.rollout.analysis.min_requests} requests per interval; the rollout goes on "
            "when traffic returns (or lower analysis.minRequests)",
        )  # fmt: skip
    return out


def _signature_gate(spec: ModelDeploymentSpec, out: RolloutState, target: str,
                    verdict: GateVerdict, now: datetime) -> bool:  # fmt: skip
    """Apply the signature gate's verdict; True when it stops the rollout here (refused, or
    the candidate waits for its check without live traffic)."""
    out.events.extend(verdict.events)
    if verdict.outcome == "refuse":
        out.history.append((target, "RolledBack", verdict.message))
        out.rolled_back, out.canary = target, None
        out.weight, out.step, out.step_started_at, out.full_size = 0, None, None, False
        out.analysis = None
        out.phase = Phase.ROLLED_BACK
        out.degraded = ConditionUpdate("Degraded", "True", INCOMPATIBLE, verdict.message)
        out.progressing = ConditionUpdate("Progressing", "False", INCOMPATIBLE, verdict.message)
        return True
    if verdict.outcome == "wait":
        out.weight = _weight(spec, out)
        out.hold_traffic = True
        out.full_size = spec.rollout.strategy in (Strategy.BLUE_GREEN, Strategy.IMMEDIATE)
        out.progressing = ConditionUpdate("Progressing", "True", "CheckingSignature",
                                          f"revision {target} takes no live traffic until its "
                                          f"signature is checked: {verdict.message}")  # fmt: skip
        out.wake_at = now + SIGNATURE_RETRY
        return True
    return False


def _passed_on_traffic(spec: ModelDeploymentSpec) -> str:
    return f"{spec.rollout.analysis.iterations} checks passed on real traffic"


def _hooks_passed(gate: Gate | None, target: str) -> bool:
    """Did prePromotion hooks (there are some) pass for the candidate? Asked only once they
    were started, so asking starts nothing."""
    return gate is not None and gate("prePromotion", target)[0] == HookVerdict.PASSED


def _verified_by(spec: ModelDeploymentSpec, out: RolloutState, gate: Gate | None,
                 target: str) -> str:  # fmt: skip
    if _iterations_done(spec, out):
        return _passed_on_traffic(spec)
    return f"prePromotion hooks passed ({gate('prePromotion', target)[1]})" if gate else ""


def _pre_promotion(out: RolloutState, target: str, gate: Gate | None) -> HookVerdict | None:
    """Run the candidate's prePromotion hooks. None: none are configured, or all passed (the
    switch may go on). Failed: rolled back. Running: the rollout waits for them."""
    if gate is None:
        return None
    verdict, said = gate("prePromotion", target)
    if verdict == HookVerdict.FAILED:
        _rollback(out, target, f"hook failed: {said}")
        return verdict
    if verdict == HookVerdict.RUNNING:
        out.progressing = ConditionUpdate(
            "Progressing", "True", "RunningHooks",
            f"revision {target} takes over once its prePromotion hooks pass (running: {said})",
        )  # fmt: skip
        return verdict
    return None


def _awaiting_verification(
    spec: ModelDeploymentSpec, out: RolloutState, preview_url: str | None
) -> None:
    """What a BlueGreen or ABTest rollout waits for, said where `kubectl describe` shows it."""
    analysis = spec.rollout.analysis
    passed = out.analysis.passed_checks if out.analysis else 0
    where = f"to {preview_url}" if preview_url else "to the preview Service NAME-canary"
    if spec.rollout.strategy == Strategy.AB_TEST:
        where = f"matching rollout.match, or {where},"
    out.progressing = ConditionUpdate(
        "Progressing", "True", "AwaitingVerification",
        f"{passed}/{analysis.iterations} checks passed on real traffic; send requests {where} "
        f"(at least {max(analysis.min_requests, 1)} per {analysis.interval}) or run "
        "`modeldeploy promote`",
    )  # fmt: skip


def _weight(spec: ModelDeploymentSpec, out: RolloutState) -> int:
    steps = spec.rollout.steps
    if spec.rollout.strategy != Strategy.CANARY or out.step is None or out.step >= len(steps):
        return 0
    return steps[out.step].set_weight


def _canary(
    spec: ModelDeploymentSpec,
    out: RolloutState,
    state: LiveRevision | None,
    now: datetime,
    waiting: bool,
    interval: timedelta,
    gate: Gate | None,
) -> None:
    steps = spec.rollout.steps
    assert out.step is not None
    if out.step >= len(steps):  # all steps done: scale up, check, then switch
        out.full_size = True
        target = out.canary or ""
        if state is not None and state.fully_ready and _pre_promotion(out, target, gate) is None:
            _switch(out, target, f"all {len(steps)} steps passed", now)
        return
    out.weight = steps[out.step].set_weight
    if out.step_started_at is None or waiting:
        return
    step = steps[out.step]
    if step.pause == INDEFINITE:
        out.progressing = ConditionUpdate("Progressing", "True", "PausedAtStep",
                                          f"holding at {out.weight}% until `modeldeploy "
                                          "promote`")  # fmt: skip
        return
    hold = interval if step.hold is None else step.hold
    due = out.step_started_at + hold
    checks = out.analysis.checks if out.analysis else []
    latest = checks[-1] if checks else None
    passed_since_start = (
        latest is not None
        and latest.verdict == Verdict.PASSED
        and on_real_traffic(latest, spec.rollout.analysis.min_requests)
        and latest.time >= out.step_started_at
    )
    if now >= due and passed_since_start:
        before = out.weight
        out.step += 1
        out.step_started_at = now
        out.weight = steps[out.step].set_weight if out.step < len(steps) else 100
        out.full_size = out.step >= len(steps)
        out.events.append(Event("Normal", "StepAdvanced",
                                f"step {out.step}/{len(steps)}: weight {before}% → "
                                f"{out.weight}%"))  # fmt: skip
        if out.full_size:
            out.weight = before  # traffic stays while the canary grows to full size
        return
    if now < due:
        out.wake_at = due


def on_real_traffic(check: AnalysisCheck, min_requests: int) -> bool:
    """Did the candidate answer enough requests in the check's interval for it to count as a
    pass? At least `minRequests`, and at least one: a pass on nothing is silence. A check whose
    metrics carry no request count (custom PromQL) passed on data its queries found."""
    counts = [r.requests for r in check.results if r.requests is not None]
    return not counts or max(counts) >= max(min_requests, 1)


def _record(out: RolloutState, check: AnalysisCheck, spec: ModelDeploymentSpec) -> AnalysisStatus:
    """The candidate's analysis record with one more check."""
    failure_limit = spec.rollout.analysis.failure_limit
    record = out.analysis or AnalysisStatus()
    checks = [*record.checks, check][-CHECKS_KEPT:]
    if check.verdict == Verdict.FAILED:
        failures = record.consecutive_failures + 1
        failed = ", ".join(r.metric for r in check.results if r.verdict == Verdict.FAILED)
        said = f"check failed ({failures}/{failure_limit}): {failed}"
        out.events.append(Event("Warning", "AnalysisFailed", said))
        return record.model_copy(update={"checks": checks, "consecutive_failures": failures,
                                         "inconclusive_since": None})  # fmt: skip
    if check.verdict == Verdict.PASSED and on_real_traffic(
        check, spec.rollout.analysis.min_requests
    ):
        return record.model_copy(update={"checks": checks, "consecutive_failures": 0,
                                         "passed_checks": record.passed_checks + 1,
                                         "inconclusive_since": None})  # fmt: skip
    return record.model_copy(update={  # Inconclusive, or a pass on silence: no verdict
        "checks": checks,
        "inconclusive_since": record.inconclusive_since or whole_seconds(check.time),
    })  # fmt: skip


def _waiting_for_data(out: RolloutState, interval: timedelta, now: datetime) -> bool:
    since = out.analysis.inconclusive_since if out.analysis else None
    return since is not None and now - since >= NO_DATA_INTERVALS * interval


def _iterations_done(spec: ModelDeploymentSpec, out: RolloutState) -> bool:
    """Enough good checks in this rollout, and the latest one did not fail."""
    record = out.analysis or AnalysisStatus()
    return record.passed_checks >= spec.rollout.analysis.iterations and (
        record.consecutive_failures == 0
    )


def _next_check(out: RolloutState, interval: timedelta, now: datetime) -> datetime:
    checks = out.analysis.checks if out.analysis else []
    if not checks:
        return now + interval
    return max(now, checks[-1].time + interval)


def _failure_summary(check: AnalysisCheck) -> str:
    parts = []
    for r in check.results:
        if r.verdict != Verdict.FAILED:
            continue
        text = f"{r.metric}={r.canary_value:.4g}" if r.canary_value is not None else r.metric
        if r.limit:
            text += f" (limit {r.limit})"
        if r.stable_value is not None:
            text += f", stable {r.stable_value:.4g}"
        if r.p_value is not None:
            text += f", p={r.p_value:.3g}"
        parts.append(text)
    return "analysis failed: " + "; ".join(parts)


def _switch(out: RolloutState, target: str, reason: str, now: datetime) -> None:
    out.events.append(Event("Normal", "Promoted", f"revision {target} promoted: {reason}"))
    out.history.append((target, "Promoted", reason))
    out.previous, out.stable, out.canary = out.stable, target, None
    out.promoted_at = now
    out.weight, out.step, out.step_started_at, out.full_size = 0, None, None, False
    out.analysis = None


def _rollback(out: RolloutState, target: str, reason: str) -> None:
    out.events.append(Event("Warning", "RolledBack", f"revision {target} rolled back: {reason}"))
    out.history.append((target, "RolledBack", reason))
    out.rolled_back, out.canary = target, None
    out.weight, out.step, out.step_started_at, out.full_size = 0, None, None, False
    out.phase = Phase.ROLLED_BACK
    out.progressing = ConditionUpdate(
        "Progressing", "False", "RolledBack",
        f"{reason}; traffic is back on {out.stable}. Fix the model and change the spec, or run "
        "`modeldeploy retry`",
    )  # fmt: skip


def _undo(out: RolloutState, target: str, now: datetime) -> None:
    """One step back: the previous revision serves again, the current one is set aside."""
    if out.previous is None or out.stable is None:
        out.events.append(Event("Warning", "UndoImpossible",
                                "no previous revision is kept to go back to"))  # fmt: skip
        return
    current = out.stable
    out.events.append(Event("Normal", "Undone", f"revision {out.previous} serves again "
                                                f"instead of {current}"))  # fmt: skip
    out.history.append((out.previous, "Undone", f"back from {current}"))
    out.stable, out.previous = out.previous, current
    out.rolled_back = target if target != out.stable else None
    out.promoted_at = now
    out.phase = Phase.ROLLED_BACK if out.rolled_back else None
