"""Verification hooks: `spec.rollout.hooks`, checks of a new revision beyond its metrics.

As Argo Rollouts' analysis Jobs and Flagger's pre-rollout and confirm-promotion webhooks: a
hook is a Job whose pod's exit code is the verdict (0 passes). Four moments:
- preRollout: before the new revision takes any live traffic; a failure rolls it back.
- prePromotion: before it takes over, run against the preview Service (NAME-canary); a failure
  rolls it back. For BlueGreen and ABTest a pass is the verification that allows promotion
  without `iterations` checks on real traffic (nothing is promoted on silence).
- postPromotion: after the switch; reported (status, Event), never undone by the operator.
- onRollback: after a rollback; reported.
Each Job's containers get MODELDEPLOY_* variables naming the ModelDeployment, the revisions,
the phase and the URLs (docs/api.md: HookJob).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from modeldeploy.api.base import ApiModel, opaque_schema
from modeldeploy.api.durations import DurationString
from modeldeploy.api.types import PositiveDuration

HOOK_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

PodTemplate = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "required": ["spec"],
            "properties": {
                "metadata": {
                    **opaque_schema("object"),
                    "description": "Labels and annotations of the hook's pods.",
                },
                "spec": {
                    **opaque_schema("object"),
                    "description": "A Pod spec (containers, volumes, serviceAccountName...).",
                },
            },
        }
    ),
]


class HookJob(ApiModel):
    """A Job run for the hook: exit code 0 of its pod passes, anything else fails.

    Its containers get MODELDEPLOY_NAME, MODELDEPLOY_NAMESPACE, MODELDEPLOY_HOOK,
    MODELDEPLOY_PHASE (preRollout, prePromotion, postPromotion, onRollback),
    MODELDEPLOY_STABLE_REVISION, MODELDEPLOY_CANARY_REVISION (the revision checked),
    MODELDEPLOY_PREVIEW_URL (NAME-canary: the new revision alone) and MODELDEPLOY_URL (the entry
    Service)."""

    template: PodTemplate
    """Pod template, as in a Job's spec.template (restartPolicy defaults to Never)."""
    backoff_limit: Annotated[int, Field(ge=0, le=6)] = 0
    """Retries of a failed pod before the hook fails."""


class Hook(ApiModel):
    """One verification hook."""

    name: Annotated[str, Field(min_length=1, max_length=20, pattern=HOOK_NAME_PATTERN)]
    """Name shown in status and Events (lowercase letters, digits and dashes)."""
    job: HookJob
    """The Job to run."""
    timeout: PositiveDuration = DurationString("5m")
    """Longest the hook may run; past it the hook fails (the Job's activeDeadlineSeconds)."""


HookList = Annotated[list[Hook], Field(max_length=4)]


class Hooks(ApiModel):
    """Hooks by the moment they run at; within one moment they run together, and all must pass."""

    pre_rollout: HookList | None = None
    """Before the new revision takes live traffic (it runs, reachable through NAME-canary); a
    failure rolls it back."""
    pre_promotion: HookList | None = None
    """Before the new revision takes over, against the preview Service NAME-canary, once it runs
    at full size (BlueGreen, ABTest) or its last canary step passed; a failure rolls it back. A
    pass verifies a BlueGreen or ABTest candidate without checks on real traffic."""
    post_promotion: HookList | None = None
    """After the new revision took over; a failure is reported (Warning Event, status)."""
    on_rollback: HookList | None = None
    """After a new revision was rolled back (analysis, a failed hook or `modeldeploy abort`)."""


HookPhase = Literal["preRollout", "prePromotion", "postPromotion", "onRollback"]
HOOK_PHASES: tuple[HookPhase, ...] = ("preRollout", "prePromotion", "postPromotion", "onRollback")


class HookVerdict(StrEnum):
    RUNNING = "Running"
    PASSED = "Passed"
    FAILED = "Failed"


class HookRun(ApiModel):
    """One run of one hook, for one revision: what `kubectl describe` and dashboards read."""

    name: Annotated[str, Field(max_length=20)]
    """The hook's name in spec.rollout.hooks."""
    phase: HookPhase
    """When it ran: preRollout, prePromotion, postPromotion or onRollback."""
    revision: Annotated[str, Field(max_length=253)]
    """The revision it checked."""
    job: Annotated[str, Field(max_length=63)]
    """The Job that ran it (kept while this record is)."""
    verdict: HookVerdict
    """Running, Passed or Failed."""
    message: Annotated[str, Field(max_length=1024)] = ""
    """Why it failed (the Job's condition), or how it passed."""
    started_at: datetime
    """When the operator created its Job."""
    duration_seconds: Annotated[int | None, Field(ge=0)] = None
    """How long it ran, once finished."""
