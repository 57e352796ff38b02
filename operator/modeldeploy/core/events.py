"""Kubernetes Events the core decides to post: what `kubectl describe md` shows.

The rollout, the plan and reconcile all announce decisions with this one type; the runtime posts
them (kube.post_event) and never turns log lines into Events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Event:
    """One Event on the ModelDeployment: its type, a CamelCase reason and a sentence."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
