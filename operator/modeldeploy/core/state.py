"""Plain data the decisions are made from: what the operator saw in the cluster.

The shell (observe) fills these from the API server; the pure core (plan) reads them. Nothing
here talks to Kubernetes, so tests build them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class RevisionState:
    """A live revision Deployment and how far its pods got."""

    name: str
    replicas: int
    ready_replicas: int = 0
    available_replicas: int = 0
    updated_replicas: int = 0
    created: datetime | None = None
    model_version: str | None = None
    model_uri: str | None = None
    failed_reason: str | None = None
    """Set when the Deployment reports ProgressDeadlineExceeded or a ReplicaFailure."""

    @property
    def fully_ready(self) -> bool:
        return self.replicas > 0 and self.ready_replicas >= self.replicas


@dataclass(frozen=True)
class Problem:
    """A spec problem only the operator can see (a Secret that does not exist)."""

    field: str
    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    """Everything the plan needs from the cluster."""

    revisions: dict[str, RevisionState] = field(default_factory=dict)
    children: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """Live children by (kind, name), for comparing with what is desired."""
    problems: list[Problem] = field(default_factory=list)
