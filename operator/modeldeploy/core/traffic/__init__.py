"""Traffic providers: how a canary weight becomes replica counts and routing objects.

One small interface, one module per provider (as flagger's routers): `replica_ratio` needs
nothing but the entry Service, `gateway_api` writes an HTTPRoute for exact weights and
header/cookie matches. Both are pure: they return counts and plain objects.
"""

from __future__ import annotations

from typing import Final

from modeldeploy.api.spec import TrafficRouting
from modeldeploy.core.children import ChildKind
from modeldeploy.core.traffic.base import Router, Split
from modeldeploy.core.traffic.gateway_api import GatewayApiRouter
from modeldeploy.core.traffic.replica_ratio import ReplicaRatio

ROUTED_KINDS: Final[tuple[ChildKind, ...]] = (*ReplicaRatio.kinds, *GatewayApiRouter.kinds)
"""Every kind a router may write: what a switch to another router leaves to delete."""


def router_for(routing: TrafficRouting) -> Router:
    """The provider a spec's trafficRouting names."""
    if routing.gateway_api is not None:
        return GatewayApiRouter(routing.gateway_api)
    return ReplicaRatio()


__all__ = ["ROUTED_KINDS", "Router", "Split", "router_for"]
