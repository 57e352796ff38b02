"""Verification hooks as Jobs: when each runs, the Job it runs, and its verdict. Pure.

The record of every run is `status.hooks` (the Job's name, its verdict, when it started), so
a restarted operator knows which hooks ran for which revision and never runs one twice. A run
is keyed by (phase, hook name, revision) and its Job name is derived from that key, so the
Job a plan asks for is the one an earlier plan created. The Job's verdict is read from its
conditions (Complete, or Failed with the Kubernetes reason: BackoffLimitExceeded,
DeadlineExceeded when the hook's timeout passed). A running hook's Job is applied on every
plan (nothing is written while it is in place); a finished hook's Job stays an hour for its
logs (ttlSecondsAfterFinished: the Job controller deletes it, so the operator needs no right to
delete Jobs), its record in the status until newer ones push it out.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from modeldeploy.api.hooks import Hook, HookPhase, HookRun, HookVerdict
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import HOOK_RUNS_LIMIT
from modeldeploy.core.children import JOB
from modeldeploy.core.conditions import whole_seconds
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.events import Event
from modeldeploy.core.naming import DEPLOYMENT_LABEL, REVISION_LABEL

JOB_TTL_SECONDS: Final = 3600


@dataclass(frozen=True)
class HookContext:
    """What a hook's Job is told about the rollout (its MODELDEPLOY_* variables)."""

    stable: str
    preview_url: str
    url: str


def job_name(owner: str, phase: HookPhase, hook: str, revision: str) -> str:
    """One Job per (phase, hook, revision): at most 45 + 16 characters, a valid label value.

    >>> job_name("fraud", "prePromotion", "smoke", "fraud-abc")
    'fraud-hook-ad045e3ce5'
    """
    digest = hashlib.sha256(f"{phase}/{hook}/{revision}".encode()).hexdigest()[:10]
    return f"{owner}-hook-{digest}"


def build_job(
    owner: Owner, hook: Hook, phase: HookPhase, revision: str, context: HookContext
) -> dict[str, Any]:
    """The hook's Job: the user's pod template with the rollout's variables added.

    The pods never carry the ModelDeployment's selector labels (the entry Service and the
    PodDisruptionBudget select by them); the Job itself does, so the operator's index sees it.
    """
    template = copy.deepcopy(hook.job.template)
    meta = template.setdefault("metadata", {})
    labels = {k: v for k, v in (meta.get("labels") or {}).items()
              if k not in (DEPLOYMENT_LABEL, REVISION_LABEL)}  # fmt: skip
    meta["labels"] = labels
    spec = template["spec"]
    spec.setdefault("restartPolicy", "Never")
    env = [
        {"name": "MODELDEPLOY_NAME", "value": owner.name},
        {"name": "MODELDEPLOY_NAMESPACE", "value": owner.namespace},
        {"name": "MODELDEPLOY_HOOK", "value": hook.name},
        {"name": "MODELDEPLOY_PHASE", "value": phase},
        {"name": "MODELDEPLOY_STABLE_REVISION", "value": context.stable},
        {"name": "MODELDEPLOY_CANARY_REVISION", "value": revision},
        {"name": "MODELDEPLOY_PREVIEW_URL", "value": context.preview_url},
        {"name": "MODELDEPLOY_URL", "value": context.url},
    ]
    for container in spec.get("containers") or []:
        ours = {e["name"] for e in env}
        kept = [e for e in container.get("env") or [] if e.get("name") not in ours]
        container["env"] = [*kept, *env]
    return {
        "apiVersion": JOB.api_version,
        "kind": JOB.kind,
        "metadata": owner.metadata(job_name(owner.name, phase, hook.name, revision)),
        "spec": {
            "ttlSecondsAfterFinished": JOB_TTL_SECONDS,
            "backoffLimit": hook.job.backoff_limit,
            "activeDeadlineSeconds": max(1, int(hook.timeout.seconds)),
            "template": template,
        },
    }


def job_verdict(job: dict[str, Any] | None) -> tuple[HookVerdict, str]:
    """A Job's verdict from its status: Passed when it completed, Failed (with the reason
    Kubernetes gives) when it failed or ran past its deadline, else Running.

    >>> job_verdict({"status": {"conditions": [{"type": "Failed", "status": "True",
    ...     "reason": "DeadlineExceeded", "message": "Job was active longer than specified"}]}})
    (<HookVerdict.FAILED: 'Failed'>, 'DeadlineExceeded: Job was active longer than specified')
    """
    status = (job or {}).get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") in ("Failed", "FailureTarget"):
            reason = cond.get("reason") or "Failed"
            return HookVerdict.FAILED, f"{reason}: {cond.get('message') or 'the Job failed'}"
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return HookVerdict.PASSED, "exit code 0"
    if status.get("succeeded"):
        return HookVerdict.PASSED, "exit code 0"
    return HookVerdict.RUNNING, ""


def hooks_for(spec: ModelDeploymentSpec, phase: HookPhase) -> list[Hook]:
    hooks = spec.rollout.hooks
    if hooks is None:
        return []
    chosen = {
        "preRollout": hooks.pre_rollout,
        "prePromotion": hooks.pre_promotion,
        "postPromotion": hooks.post_promotion,
        "onRollback": hooks.on_rollback,
    }[phase]
    return list(chosen or [])


@dataclass
class HookBook:
    """The hook runs of one plan: the stored records brought up to date with the live Jobs,
    the runs this plan starts, the Jobs to apply and the Events to post."""

    owner: Owner
    spec: ModelDeploymentSpec
    context: HookContext
    now: datetime
    runs: list[HookRun]
    jobs: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        owner: Owner,
        spec: ModelDeploymentSpec,
        context: HookContext,
        stored: list[HookRun],
        live: dict[tuple[str, str], dict[str, Any]],
        now: datetime,
    ) -> HookBook:
        book = cls(owner, spec, context, now, [])
        for run in stored:
            book.runs.append(book._refresh(run, live))
        return book

    def _refresh(self, run: HookRun, live: dict[tuple[str, str], dict[str, Any]]) -> HookRun:
        if run.verdict != HookVerdict.RUNNING:
            return run
        hook = next((h for h in hooks_for(self.spec, run.phase) if h.name == run.name), None)
        if hook is None:
            return self._finish(run, HookVerdict.FAILED, "removed from spec.rollout.hooks")
        verdict, message = job_verdict(live.get((JOB.kind, run.job)))
        if verdict != HookVerdict.RUNNING:
            return self._finish(run, verdict, message)
        self.jobs.append(build_job(self.owner, hook, run.phase, run.revision, self.context))
        return run

    def _finish(self, run: HookRun, verdict: HookVerdict, message: str) -> HookRun:
        took = max(0, int((self.now - run.started_at).total_seconds()))
        said = f"{run.phase} hook {run.name} for revision {run.revision} {verdict.lower()}"
        if verdict == HookVerdict.FAILED:
            self.events.append(Event("Warning", "HookFailed", f"{said} after {took}s: {message}"))
        else:
            self.events.append(Event("Normal", "HookPassed", f"{said} in {took}s"))
        return run.model_copy(
            update={"verdict": verdict, "message": message[:1024], "duration_seconds": took}
        )

    def run(self, phase: HookPhase, revision: str) -> tuple[HookVerdict | None, str]:
        """Start the phase's hooks for `revision` where not started yet; their joint verdict:
        None without hooks, Failed if any failed (with its message), Passed if all passed,
        else Running."""
        hooks = hooks_for(self.spec, phase)
        if not hooks:
            return None, ""
        verdicts: list[tuple[HookVerdict, str]] = []
        for hook in hooks:
            found = next((r for r in self.runs if (r.phase, r.name, r.revision)
                          == (phase, hook.name, revision)), None)  # fmt: skip
            if found is None:
                found = self._start(hook, phase, revision)
            verdicts.append((found.verdict, f"{phase} hook {hook.name}: {found.message}"))
        failed = [m for v, m in verdicts if v == HookVerdict.FAILED]
        if failed:
            return HookVerdict.FAILED, "; ".join(failed)
        if all(v == HookVerdict.PASSED for v, _ in verdicts):
            return HookVerdict.PASSED, ", ".join(h.name for h in hooks)
        running = [h.name for h, (v, _) in zip(hooks, verdicts, strict=True)
                   if v == HookVerdict.RUNNING]  # fmt: skip
        return HookVerdict.RUNNING, ", ".join(running)

    def _start(self, hook: Hook, phase: HookPhase, revision: str) -> HookRun:
        job = build_job(self.owner, hook, phase, revision, self.context)
        self.jobs.append(job)
        run = HookRun(name=hook.name, phase=phase, revision=revision,
                      job=job["metadata"]["name"], verdict=HookVerdict.RUNNING,
                      started_at=whole_seconds(self.now))  # fmt: skip
        self.runs.append(run)
        self.events.append(Event("Normal", "HookStarted",
                                 f"{phase} hook {hook.name} started for revision {revision} "
                                 f"(Job {run.job})"))  # fmt: skip
        return run

    def kept(self) -> list[HookRun]:
        """The records the status keeps: the newest, and every one still running."""
        running = [r for r in self.runs if r.verdict == HookVerdict.RUNNING]
        finished = [r for r in self.runs if r.verdict != HookVerdict.RUNNING]
        room = max(0, HOOK_RUNS_LIMIT - len(running))
        keep = {id(r) for r in running} | {id(r) for r in finished[-room:]} if room else {
            id(r) for r in running}  # fmt: skip
        return [r for r in self.runs if id(r) in keep][-HOOK_RUNS_LIMIT:]
