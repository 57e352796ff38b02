"""What the operator reports: `ModelDeployment.status`.

Rollout state lives here and nowhere else (never only in the operator's memory), so an operator
that restarts mid-rollout resumes at the same step. Lists are bounded so the object stays small.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BeforeValidator, Field

from modeldeploy.api.base import ApiModel
from modeldeploy.api.hooks import HookRun
from modeldeploy.api.types import Percent

HISTORY_LIMIT = 20
HOOK_RUNS_LIMIT = 12
CHECKS_LIMIT = 20
HANDLED_ACTION_LIMIT: Final = 128
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
"""A sha256 digest in lower-case hex, as the serving image reports it."""


def _cut(limit: int) -> BeforeValidator:
    """Free text longer than the status holds is cut, with a mark, rather than refused: a
    message quoting the API server or a user's input must never stop the status from being
    written (identities, such as revision names, are never cut: cut, they would name another)."""

    def cut(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            return value[: limit - 3] + "..."
        return value

    return BeforeValidator(cut)


def fit_handled_action(action: str) -> str:
    """An action annotation as `status.handledAction` records it: unchanged when it fits, else
    shortened with a digest of the whole, so another long value still reads as a new action.

    >>> fit_handled_action("promote@2026-01-01T00:00:00Z")
    'promote@2026-01-01T00:00:00Z'
    >>> len(fit_handled_action("promote@" + "x" * 300))
    128
    """
    if len(action) <= HANDLED_ACTION_LIMIT:
        return action
    digest = "...sha256:" + hashlib.sha256(action.encode()).hexdigest()[:16]
    return action[: HANDLED_ACTION_LIMIT - len(digest)] + digest


class Phase(StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class Condition(ApiModel):
    """A standard Kubernetes condition; `kubectl wait --for=condition=Ready` reads these."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """Ready, Progressing or Degraded."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: Annotated[
        str,
        Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"),
    ]
    """A CamelCase word for programs."""
    message: Annotated[str, _cut(32768), Field(max_length=32768)] = ""
    """A sentence for people."""
    last_transition_time: datetime
    """When status last changed."""
    observed_generation: Annotated[int | None, Field(ge=0)] = None
    """The spec generation this condition was computed from."""


class RevisionRef(ApiModel):
    """One revision: a Deployment running one serving template."""

    name: Annotated[str, Field(max_length=253)]
    """Deployment name, NAME-<hash>."""
    model_version: Annotated[str | None, Field(max_length=63)] = None
    """spec.model.version of that template."""
    model_uri: Annotated[str | None, Field(max_length=2048)] = None
    """spec.model.uri of that template."""
    model_sha256: Sha256 | None = None
    """sha256 of the model bytes this revision's pods serve, as they report it: verified
    against spec.model.sha256 when that pins it (a pod refuses other bytes), else computed
    from what they downloaded. Read once, when all its pods are Ready; unset before."""
    model_sha256_conflict: Annotated[list[Sha256] | None, Field(max_length=8)] = None
    """Set instead of modelSha256 when the revision's pods reported different digests (an
    unpinned URI whose bytes changed between pod starts): every digest seen. A finding, also
    reported as a ModelDigestMismatch Warning Event; pin spec.model.sha256 to prevent it."""
    replicas: Annotated[int | None, Field(ge=0)] = None
    """Pods this revision should have now (unset when its Deployment is gone)."""
    ready_replicas: Annotated[int | None, Field(ge=0)] = None
    """Pods of this revision that are Ready."""
    weight: Percent | None = None
    """Percent of live traffic this revision's pods get now (the canary's is canaryWeight)."""


class Verdict(StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


class MetricResult(ApiModel):
    """One metric in one analysis check: the values measured and why it passed or failed."""

    metric: Annotated[str, Field(max_length=63)]
    """Metric name from spec.rollout.analysis.metrics."""
    verdict: Verdict
    """Passed, Failed or Inconclusive (not enough requests)."""
    canary_value: float | None = None
    """Value measured on the new revision."""
    stable_value: float | None = None
    """Value measured on the stable revision over the same interval."""
    limit: Annotated[str, _cut(64), Field(max_length=64)] | None = None
    """The limit it was held to, as written in the spec."""
    p_value: Annotated[float | None, Field(ge=0, le=1)] = None
    """p-value of the statistical test, when the statistical judge ran one."""
    requests: Annotated[int | None, Field(ge=0)] = None
    """Requests the new revision served in the interval."""


class AnalysisCheck(ApiModel):
    """One analysis check of the new revision."""

    time: datetime
    """When it ran."""
    step: Annotated[int, Field(ge=0)]
    """Rollout step at the time."""
    verdict: Verdict
    """Failed if any metric failed, Inconclusive if any lacked data, else Passed."""
    results: Annotated[list[MetricResult], Field(max_length=16)] = Field(default_factory=list)
    """Per-metric results."""


class AnalysisStatus(ApiModel):
    """The recent analysis record of the rollout in progress."""

    checks: Annotated[list[AnalysisCheck], Field(max_length=CHECKS_LIMIT)] = Field(
        default_factory=list
    )
    """The most recent checks, newest last."""
    consecutive_failures: Annotated[int, Field(ge=0)] = 0
    """Failed checks in a row; reaching failureLimit rolls back."""
    passed_checks: Annotated[int, Field(ge=0)] = 0
    """Passed checks in this rollout (ABTest and BlueGreen promote after `iterations`)."""
    inconclusive_since: datetime | None = None
    """Start of the current run of Inconclusive checks (too little traffic to judge)."""


HistoryEvent = Literal["Deployed", "Promoted", "RolledBack", "Aborted", "Undone"]


class HistoryEntry(ApiModel):
    """One line of the audit trail: which revision did what, and when."""

    time: datetime
    """When it happened."""
    revision: Annotated[str, Field(max_length=253)]
    """Revision (Deployment) name."""
    model_version: Annotated[str | None, Field(max_length=63)] = None
    """Model version of that revision."""
    model_uri: Annotated[str | None, Field(max_length=2048)] = None
    """Model URI of that revision."""
    model_sha256: Sha256 | None = None
    """sha256 of the model bytes the revision's pods served (see RevisionRef.modelSha256),
    once read: the audit trail of exactly which bytes served."""
    event: HistoryEvent
    """What happened to the revision."""
    message: Annotated[str, _cut(1024), Field(max_length=1024)] = ""
    """Why, in a sentence."""


class ModelDeploymentStatus(ApiModel):
    """Observed state, written only by the operator."""

    observed_generation: Annotated[int | None, Field(ge=0)] = None
    """metadata.generation this status describes; older means the operator has not caught up."""
    phase: Phase | None = None
    """Healthy, Progressing, Paused, RolledBack or Failed."""
    conditions: Annotated[
        list[Condition],
        Field(
            max_length=8,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        ),
    ] = Field(default_factory=list)
    """Ready, Progressing and Degraded (kubectl wait); Reconciling and Stalled, each only while
    True, as Flux's kstatus and Argo CD read health."""
    stable_revision: RevisionRef | None = None
    """The revision serving all (or most) traffic."""
    canary_revision: RevisionRef | None = None
    """The new revision being rolled out, if any."""
    previous_revision: RevisionRef | None = None
    """The stable revision before the last promotion: kept running for scaleDownDelay, then at
    zero replicas, and the target of `modeldeploy undo`."""
    rolled_back_revision: RevisionRef | None = None
    """A revision rolled back (by analysis or `modeldeploy abort`): not rolled out again until
    the spec changes or `modeldeploy retry`."""
    last_promotion_time: datetime | None = None
    """When the last promotion happened (scaleDownDelay counts from here)."""
    canary_weight: Percent = 0
    """Percent of live traffic the new revision gets now, as the routing really gives it: 0
    for a BlueGreen candidate and before the new revision has a ready pod. Under replicaRatio
    the pod counts give the nearest share (docs/api.md: replicaRatio); while the canary grows
    to full size after its last step, the share its pod count gives (50 % at full size)."""
    current_step: Annotated[int | None, Field(ge=0)] = None
    """Index into spec.rollout.steps of the step in progress."""
    step_started_at: datetime | None = None
    """When the current step began (pauses count from here)."""
    handled_action: Annotated[str | None, Field(max_length=HANDLED_ACTION_LIMIT)] = None
    """The last `modeldeploy.io/action` annotation acted on (promote, abort, retry, undo), or
    refused; one longer than 128 characters is recorded shortened, with a digest."""
    replicas: Annotated[int, Field(ge=0)] = 0
    """Serving pods of all revisions."""
    ready_replicas: Annotated[int, Field(ge=0)] = 0
    """Serving pods that are ready."""
    selector: Annotated[str | None, Field(max_length=1024)] = None
    """Label selector of the serving pods (for the scale subresource)."""
    url: Annotated[str | None, Field(max_length=2048)] = None
    """Where clients in the cluster call the model."""
    preview_url: Annotated[str | None, Field(max_length=2048)] = None
    """While a new revision is rolled out: where tests and smoke traffic reach it directly
    (the NAME-canary Service, the preview). A BlueGreen candidate gets no live traffic before
    the switch, whatever the router; requests sent here are what its analysis judges."""
    analysis: AnalysisStatus | None = None
    """Analysis record of the rollout in progress."""
    hooks: Annotated[list[HookRun], Field(max_length=HOOK_RUNS_LIMIT)] = Field(default_factory=list)
    """Recent runs of spec.rollout.hooks, newest last."""
    history: Annotated[list[HistoryEntry], Field(max_length=HISTORY_LIMIT)] = Field(
        default_factory=list
    )
    """Audit trail of revisions and outcomes, newest last."""
