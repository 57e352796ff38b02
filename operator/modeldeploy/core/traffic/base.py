"""The traffic provider interface and what a provider returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from modeldeploy.api.spec import MatchRule
from modeldeploy.core.desired.owner import Owner


@dataclass(frozen=True)
class Split:
    """What one weight means for a provider."""

    stable_replicas: int
    canary_replicas: int
    effective_weight: float
    """Share of requests the canary really gets, in percent (replica ratios are coarse)."""
    objects: list[dict[str, Any]] = field(default_factory=list)
    """Routing objects to apply (an HTTPRoute), besides the Services."""


class Router(Protocol):
    def split(
        self,
        owner: Owner,
        demand: int,
        weight: int,
        canary: str | None,
        match: list[MatchRule] | None,
    ) -> Split:
        """Replica counts and routing objects that give `canary` about `weight` percent."""
        ...

    def entry_selects_all_revisions(self) -> bool:
        """Whether the entry Service spreads over every revision's pods (replicaRatio)."""
        ...
