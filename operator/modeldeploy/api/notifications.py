"""Notifications: `spec.rollout.notifications`, webhooks told what a rollout did.

For the people watching a rollout (a Slack channel, an incident tool, a chat bot): rollout
started, step advanced, promoted, rolled back, hook failed. A notification is told, never
asked: the operator sends it from a bounded queue in the background, with a short timeout and
no retry, and drops it (counted in modeldeploy_notifications_total{result="dropped"}) when the
queue is full. No rollout ever waits on a notification, or fails because of one.

Per ModelDeployment rather than operator-wide: the team that owns a model owns its channel,
and the URL's Secret lives in that team's namespace.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from modeldeploy.api.base import ApiModel
from modeldeploy.api.hooks import (
    HOOK_NAME_PATTERN,
    HttpUrl,
    UrlTarget,
    ValueFromSecret,
    WebhookHeaders,
)


class NotifyEvent(StrEnum):
    """What a notification reports: the reason of the Event the operator posts."""

    ROLLOUT_STARTED = "RolloutStarted"
    STEP_ADVANCED = "StepAdvanced"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    HOOK_FAILED = "HookFailed"


class NotifyFormat(StrEnum):
    """The body's shape."""

    JSON = "JSON"
    SLACK = "Slack"


class _Named(ApiModel):
    """A notifier's name, in a base of its own only so that the schema (the CRD, docs/api.md)
    lists it before the URL fields, which pydantic puts first as UrlTarget's."""

    name: Annotated[str, Field(min_length=1, max_length=20, pattern=HOOK_NAME_PATTERN)]
    """Name shown in the operator's log (lowercase letters, digits and dashes)."""


class Notifier(UrlTarget, _Named):
    """One receiver of notifications: an HTTP endpoint that gets a POST per event.

    format JSON: {"event", "type" (Normal or Warning), "message", "time", "modelDeployment":
    {namespace, name, uid}, "phase", "stableRevision", "canaryRevision", "rolledBackRevision"
    (each {name, modelVersion} or null), "canaryWeight"}. format Slack: {"text": "..."}, what
    a Slack (or Mattermost, Rocket.Chat) incoming webhook takes."""

    url: HttpUrl | None = None
    """Where to POST (not for URLs that carry a token, as Slack's do: use urlFrom)."""
    url_from: ValueFromSecret | None = None
    """The URL from a Secret in the ModelDeployment's namespace."""
    format: NotifyFormat = NotifyFormat.JSON
    """JSON (the whole record) or Slack ({"text": ...})."""
    events: Annotated[list[NotifyEvent] | None, Field(min_length=1, max_length=5)] = None
    """Which events to send; all five when unset."""
    headers: WebhookHeaders | None = None
    """Headers sent with each POST (Content-Type is application/json)."""


NotifierList = Annotated[list[Notifier], Field(max_length=4)]
