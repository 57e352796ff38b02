"""Verification hooks: when each runs, the Job or webhook call it runs, and its verdict. Pure.

The record of every run is `status.hooks` (the Job's name, its verdict, when it started), so
a restarted operator knows which hooks ran for which revision and never runs one twice. A run
is keyed by (phase, hook name, revision) and its Job name is derived from that key, so the
Job a plan asks for is the one an earlier plan created. The Job's verdict is read from its
conditions (Complete, or Failed with the Kubernetes reason: BackoffLimitExceeded,
DeadlineExceeded when the hook's timeout passed). A running hook's Job is applied on every
plan (nothing is written while it is in place); a finished hook's Job stays an hour for its
logs (ttlSecondsAfterFinished: the Job controller deletes it, so the operator needs no right to
delete Jobs), its record in the status until newer ones push it out.

A webhook hook is the same record without a Job: while it runs, every plan lists its call in
`HookBook.calls` (the runtime makes it off the reconcile loop, once per key however often it is
listed, runtime/webhooks.py) and the next plans read its result from `results`, as analysis
checks are read: no I/O here. A record still running past the hook's timeout (and a grace for
the last attempt) fails, so a verdict lost with an operator restart never holds a rollout.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from modeldeploy.api.hooks import Hook, HookPhase, HookRun, HookVerdict, HookWebhook
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import HOOK_RUNS_LIMIT
from modeldeploy.core.children import JOB
from modeldeploy.core.conditions import whole_seconds
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.events import Event
from modeldeploy.core.naming import DEPLOYMENT_LABEL, MODEL_VERSION_ANNOTATION, REVISION_LABEL

JOB_TTL_SECONDS: Final = 3600
WEBHOOK_GRACE: Final = timedelta(seconds=15)
"""How long past a webhook hook's timeout its record may wait for the runtime's result."""
WEBHOOK_POLL: Final = timedelta(seconds=1)
"""How soon a plan with a webhook call in flight asks to run again (to read its result)."""
HookKey = tuple[str, str, str]
"""(phase, hook name, revision): one run of one hook."""


@dataclass(frozen=True)
class WebhookCall:
    """A webhook hook's call that the runtime owes: what to POST where, until when."""

    key: HookKey
    webhook: HookWebhook
    payload: dict[str, Any]
    deadline: datetime
    """The hook's timeout from when its run started: no attempt starts past it."""
    field: str
    """The spec field it comes from, for messages (spec.rollout.hooks.preRollout[0].webhook)."""


@dataclass(frozen=True)
class WebhookResult:
    """What a webhook call came to: passed (a 2xx answer) or not, and why."""

    passed: bool
    message: str
    seconds: float
    attempts: int


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
    assert hook.job is not None, "a Job for a webhook hook"
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


def webhook_payload(
    owner: Owner,
    hook: str,
    phase: HookPhase,
    stable: tuple[str, str | None],
    candidate: tuple[str, str | None],
    context: HookContext,
) -> dict[str, Any]:
    """The JSON body of a webhook hook: what a Job's MODELDEPLOY_* variables say, and the uid.

    >>> body = webhook_payload(Owner("fraud", "ml", "u-1"), "smoke", "prePromotion",
    ...     ("fraud-a", "v1"), ("fraud-b", "v2"), HookContext("fraud-a", "http://p", "http://u"))
    >>> body["hook"], body["candidateRevision"]
    ({'name': 'smoke', 'phase': 'prePromotion'}, {'name': 'fraud-b', 'modelVersion': 'v2'})
    """
    return {
        "modelDeployment": {"namespace": owner.namespace, "name": owner.name, "uid": owner.uid},
        "hook": {"name": hook, "phase": phase},
        "phase": phase,
        "stableRevision": {"name": stable[0], "modelVersion": stable[1]},
        "candidateRevision": {"name": candidate[0], "modelVersion": candidate[1]},
        "previewUrl": context.preview_url,
        "url": context.url,
    }


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
    calls: list[WebhookCall] = field(default_factory=list)
    """Webhook calls owed: every webhook run still running (the runtime dedups them)."""
    results: Mapping[HookKey, WebhookResult] = field(default_factory=dict)
    """Webhook calls' results the runtime has, by run."""
    live: Mapping[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        owner: Owner,
        spec: ModelDeploymentSpec,
        context: HookContext,
        stored: list[HookRun],
        live: dict[tuple[str, str], dict[str, Any]],
        now: datetime,
        results: Mapping[HookKey, WebhookResult] | None = None,
    ) -> HookBook:
        book = cls(owner, spec, context, now, [], results=results or {}, live=live)
        for run in stored:
            book.runs.append(book._refresh(run, live))
        return book

    def _refresh(self, run: HookRun, live: dict[tuple[str, str], dict[str, Any]]) -> HookRun:
        if run.verdict != HookVerdict.RUNNING:
            return run
        hook = next((h for h in hooks_for(self.spec, run.phase) if h.name == run.name), None)
        if hook is None:
            return self._finish(run, HookVerdict.FAILED, "removed from spec.rollout.hooks")
        if hook.webhook is not None:
            return self._await_webhook(run, hook)
        verdict, message = job_verdict(live.get((JOB.kind, run.job or "")))
        if verdict != HookVerdict.RUNNING:
            return self._finish(run, verdict, message)
        self.jobs.append(build_job(self.owner, hook, run.phase, run.revision, self.context))
        return run

    def _await_webhook(self, run: HookRun, hook: Hook) -> HookRun:
        """A running webhook run: finished by its result, failed past its timeout, else its
        call is owed again (after a restart the runtime has no record of it)."""
        result = self.results.get((run.phase, run.name, run.revision))
        if result is not None:
            verdict = HookVerdict.PASSED if result.passed else HookVerdict.FAILED
            return self._finish(run, verdict, result.message, round(result.seconds),
                                result.attempts)  # fmt: skip
        if self.now >= run.started_at + hook.timeout.delta + WEBHOOK_GRACE:
            return self._finish(run, HookVerdict.FAILED,
                                f"DeadlineExceeded: no verdict within the hook's timeout "
                                f"({hook.timeout})")  # fmt: skip
        self.calls.append(self._call(hook, run.phase, run.revision, run.started_at))
        return run

    def _call(self, hook: Hook, phase: HookPhase, revision: str, started: datetime) -> WebhookCall:
        assert hook.webhook is not None
        index = next(i for i, h in enumerate(hooks_for(self.spec, phase)) if h.name == hook.name)
        stable = self.context.stable
        payload = webhook_payload(self.owner, hook.name, phase, (stable, self._version(stable)),
                                  (revision, self._version(revision)), self.context)  # fmt: skip
        return WebhookCall((phase, hook.name, revision), hook.webhook, payload,
                           started + hook.timeout.delta,
                           f"spec.rollout.hooks.{phase}[{index}].webhook")  # fmt: skip

    def _version(self, revision: str) -> str | None:
        """A revision's model version: from its Deployment, else (not created yet: the spec's
        own revision) from the spec."""
        deployment = self.live.get(("Deployment", revision))
        if deployment is not None:
            annotations = deployment["metadata"].get("annotations") or {}
            return annotations.get(MODEL_VERSION_ANNOTATION) or None
        return self.spec.model.version or None

    def _finish(self, run: HookRun, verdict: HookVerdict, message: str,
                took: int | None = None, attempts: int | None = None) -> HookRun:  # fmt: skip
        if took is None:
            took = max(0, int((self.now - run.started_at).total_seconds()))
        said = f"{run.phase} hook {run.name} for revision {run.revision} {verdict.lower()}"
        if verdict == HookVerdict.FAILED:
            self.events.append(Event("Warning", "HookFailed", f"{said} after {took}s: {message}"))
        else:
            self.events.append(Event("Normal", "HookPassed", f"{said} in {took}s"))
        return run.model_copy(update={"verdict": verdict, "message": message[:1024],
                                      "duration_seconds": took, "attempts": attempts})  # fmt: skip

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
        if hook.webhook is not None:
            started = whole_seconds(self.now)
            self.calls.append(self._call(hook, phase, revision, started))
            run = HookRun(name=hook.name, phase=phase, revision=revision,
                          verdict=HookVerdict.RUNNING, started_at=started)  # fmt: skip
            self.runs.append(run)
            self.events.append(Event("Normal", "HookStarted",
                                     f"{phase} hook {hook.name} started for revision "
                                     f"{revision} (webhook)"))  # fmt: skip
            return run
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
