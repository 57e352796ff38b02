"""Verification hooks: `spec.rollout.hooks`, checks of a new revision beyond its metrics.

As Argo Rollouts' analysis Jobs and Flagger's pre-rollout and confirm-promotion webhooks: a
hook is a Job whose pod's exit code is the verdict (0 passes), or an HTTP webhook whose answer
is the verdict (2xx passes). Four moments:
- preRollout: before the new revision takes any live traffic; a failure rolls it back.
- prePromotion: before it takes over, run against the preview Service (NAME-canary); a failure
  rolls it back. For BlueGreen and ABTest a pass is the verification that allows promotion
  without `iterations` checks on real traffic (nothing is promoted on silence).
- postPromotion: after the switch; reported (status, Event), never undone by the operator.
- onRollback: after a rollback; reported.
Each Job's containers get MODELDEPLOY_* variables naming the ModelDeployment, the revisions,
the phase and the URLs (docs/api.md: HookJob); a webhook gets the same as a JSON POST body
(docs/api.md: HookWebhook).

Webhook URLs are http:// or https:// only, refused at `kubectl apply` otherwise (a CEL rule
and the same check offline): the operator calls no other scheme, and follows no redirect.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from modeldeploy.api.base import ApiModel, CelRule, opaque_schema
from modeldeploy.api.durations import DURATION_HINT, DURATION_PATTERN, DurationString, cel_seconds
from modeldeploy.api.types import ObjectName, PositiveDuration

HOOK_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
HTTP_URL_PATTERN: Final = r"^https?://[^/?#\s]+([/?#]\S*)?$"
HTTP_URL_HINT: Final = (
    "must be an http:// or https:// URL with a host, such as http://checker.ml.svc:8080/verify "
    "(no other scheme is called)"
)
WEBHOOK_TIMEOUT_MAX_SECONDS: Final = 60
WEBHOOK_TIMEOUT_HINT: Final = "a webhook's timeout is at most 60s (one attempt; see retries)"


def _http_url(value: str) -> str:
    if not re.fullmatch(HTTP_URL_PATTERN, value):
        raise ValueError(f"{value[:100]!r} {HTTP_URL_HINT}")
    return value


HttpUrl = Annotated[
    str,
    AfterValidator(_http_url),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 2048,
            "x-kubernetes-validations": [
                {"rule": f"self.matches(r'{HTTP_URL_PATTERN}')", "message": HTTP_URL_HINT}
            ],
        }
    ),
    Field(max_length=2048),
]
"""A URL the operator may call: http or https, with a host."""


def _attempt_timeout(duration: DurationString) -> DurationString:
    if not 0 < duration.seconds <= WEBHOOK_TIMEOUT_MAX_SECONDS:
        raise ValueError(f"{duration!r}: {WEBHOOK_TIMEOUT_HINT}, and greater than zero")
    return duration


_WELL_FORMED = f"self.matches(r'{DURATION_PATTERN}')"
AttemptTimeout = Annotated[
    DurationString,
    AfterValidator(_attempt_timeout),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [
                {"rule": _WELL_FORMED, "message": DURATION_HINT},
                {
                    "rule": f"!{_WELL_FORMED} || ({cel_seconds('self')} > 0 && "
                    f"{cel_seconds('self')} <= {WEBHOOK_TIMEOUT_MAX_SECONDS})",
                    "message": f"{WEBHOOK_TIMEOUT_HINT}, and greater than zero",
                },
            ],
        }
    ),
]
"""One webhook attempt's timeout: more than 0, at most 60s."""

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


class SecretKeySelector(ApiModel):
    """A key of a Secret in the ModelDeployment's namespace."""

    name: ObjectName
    """Secret name."""
    key: Annotated[str, Field(min_length=1, max_length=253)]
    """Key inside the Secret."""


class ValueFromSecret(ApiModel):
    """A value read from a Secret when the call is made (never copied into status or Events)."""

    secret_key_ref: SecretKeySelector
    """The Secret and key holding the value."""


class WebhookHeader(ApiModel):
    """An HTTP header sent with the call; exactly one of value or valueFrom."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][-A-Za-z0-9]*$")]
    """Header name, such as Authorization or X-Api-Key."""
    value: Annotated[str, Field(max_length=4096)] | None = None
    """A literal value (not for credentials: use valueFrom)."""
    value_from: ValueFromSecret | None = None
    """The value from a Secret (a bearer token, an API key)."""

    cel_rules = (
        CelRule(
            rule="has(self.value) != has(self.valueFrom)",
            message="a header needs exactly one of value or valueFrom",
        ),
    )

    @model_validator(mode="after")
    def _check_one(self) -> Self:
        if (self.value is None) == (self.value_from is None):
            raise ValueError(self.cel_rules[0].message)
        return self


WebhookHeaders = Annotated[list[WebhookHeader], Field(max_length=8)]

ONE_URL_RULE = CelRule(
    rule="has(self.url) != has(self.urlFrom)",
    message="set exactly one of url or urlFrom (a Secret key holding the URL)",
)


class UrlTarget(ApiModel):
    """Base of every model the operator POSTs to (a webhook hook, a notifier): exactly one of
    url or urlFrom, refused by the same rule in CEL and offline.

    The fields' docstrings are a webhook hook's; a subclass that explains them otherwise
    declares them again with its own docstrings (pydantic keeps their place and type checks)."""

    url: HttpUrl | None = None
    """Where to POST, such as http://checker.ml.svc:8080/verify."""
    url_from: ValueFromSecret | None = None
    """The URL from a Secret (when it embeds a token); it must be http(s) too."""

    cel_rules = (ONE_URL_RULE,)

    @model_validator(mode="after")
    def _check_one_url(self) -> Self:
        if (self.url is None) == (self.url_from is None):
            raise ValueError(ONE_URL_RULE.message)
        return self


class HookWebhook(UrlTarget):
    """An HTTP POST whose answer is the verdict: any 2xx passes; any other status, a redirect,
    a timeout or a connection error fails, with the reason in the message.

    The JSON body names the ModelDeployment (modelDeployment: namespace, name, uid), the hook
    (hook: name, phase), phase (the hook's phase again, as Flagger's payload has it), the
    revisions (stableRevision and candidateRevision: name, modelVersion), previewUrl
    (NAME-canary: the candidate alone, for prePromotion checks) and url (the entry Service).

    Transient failures (a timeout, a connection error, 408, 429 or 5xx) are retried `retries`
    times, after 1s, 2s, 4s..., within the hook's timeout: as Flagger retries a failing
    webhook and Argo Rollouts tolerates consecutive errors before a verdict. Any other 4xx is
    the receiver's answer, final at once. The call runs off the reconcile loop: the rollout
    waits for its verdict, nothing else does."""

    timeout: AttemptTimeout = DurationString("10s")
    """Longest one attempt may take (at most 60s)."""
    retries: Annotated[int, Field(ge=0, le=5)] = 2
    """Further attempts after a transient failure."""
    headers: WebhookHeaders | None = None
    """Headers sent with each attempt (Content-Type is application/json)."""


class Hook(ApiModel):
    """One verification hook: a Job or a webhook."""

    name: Annotated[str, Field(min_length=1, max_length=20, pattern=HOOK_NAME_PATTERN)]
    """Name shown in status and Events (lowercase letters, digits and dashes)."""
    job: HookJob | None = None
    """The Job to run."""
    webhook: HookWebhook | None = None
    """An HTTP endpoint to POST to, its answer the verdict: a 2xx passes; a timeout, a
    connection error, 408, 425, 429 or a 5xx is retried `retries` times (after 1s, 2s, 4s...,
    within the hook's timeout); any other answer, a redirect included (never followed), fails
    at once. The JSON body: modelDeployment {namespace, name, uid}, hook {name, phase}, phase,
    stableRevision and candidateRevision {name, modelVersion}, previewUrl (NAME-canary, the
    candidate alone) and url (the entry Service). Called off the reconcile loop; a restarted
    operator may call a running hook again, so make the receiver idempotent."""
    timeout: PositiveDuration = DurationString("5m")
    """Longest the hook may run; past it the hook fails (a Job's activeDeadlineSeconds; a
    webhook's attempts and retries together)."""

    cel_rules = (
        CelRule(
            rule="has(self.job) != has(self.webhook)",
            message="a hook is either a job or a webhook: set exactly one",
        ),
    )

    @model_validator(mode="after")
    def _check_one(self) -> Self:
        if (self.job is None) == (self.webhook is None):
            raise ValueError(self.cel_rules[0].message)
        return self


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
    job: Annotated[str, Field(max_length=63)] | None = None
    """The Job that ran it (kept while this record is); none for a webhook."""
    verdict: HookVerdict
    """Running, Passed or Failed."""
    message: Annotated[str, Field(max_length=1024)] = ""
    """Why it failed (the Job's condition), or how it passed."""
    started_at: datetime
    """When the operator created its Job."""
    duration_seconds: Annotated[int | None, Field(ge=0)] = None
    """How long it ran, once finished."""
    attempts: Annotated[int | None, Field(ge=0, le=10)] = None
    """HTTP attempts a webhook took to its verdict."""
