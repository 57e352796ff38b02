"""The traffic provider interface and what a provider returns.

A router knows what routing needs of the cluster: the objects it writes (kinds from the table
of child kinds), how the entry Service selects pods behind it, and so whether a previous
revision can stay up without taking traffic. The plan asks it and special-cases none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Protocol

from modeldeploy.api.spec import MatchRule
from modeldeploy.core.children import ChildKind
from modeldeploy.core.desired.owner import Owner


@dataclass(frozen=True)
class Split:
    """What one weight means for a provider."""

    stable_replicas: int
    canary_replicas: int
    effective_weight: float
    """Share of requests the canary really gets, in percent (replica ratios are coarse)."""
    weight: int = 0
    """The weight the status reports: the one asked for, or under replicaRatio, while the
    canary runs at full size next to stable, the whole percent its pod count really gives."""
    objects: list[dict[str, Any]] = field(default_factory=list)
    """Routing objects to apply (an HTTPRoute), besides the Services."""


class Router(Protocol):
    kinds: ClassVar[tuple[ChildKind, ...]]
    """The kinds of routing object it writes (deleted by the plan when no router writes them)."""

    def split(
        self,
        owner: Owner,
        demand: int,
        weight: int,
        canary: str | None,
        match: list[MatchRule] | None,
        full_size: bool = False,
    ) -> Split:
        """Replica counts and routing objects that give `canary` about `weight` percent of
        live traffic. `full_size`: the canary runs at least at the stable side's size (before
        a switch, or BlueGreen's candidate) whatever its weight."""
        ...

    def entry_selector(self, owner: str, stable: str, weighted: str | None) -> dict[str, str]:
        """The pods the entry Service (what clients call) selects. `weighted`: the candidate
        when it takes a share of live traffic now (weight above 0, a ready pod), else None:
        then no client may reach it through the entry Service, whatever the router."""
        ...

    def scale_down_delay(self, configured: timedelta) -> timedelta:
        """How long the previous revision stays up after a promotion, given spec's
        scaleDownDelay: only where it then takes no traffic."""
        ...
