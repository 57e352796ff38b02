"""The children that exist only while a rule wants them, and which of them to delete now.

The Deployment of the target revision and the entry Service always exist once a revision is
stable. Every other child comes and goes: the HPA with spec.autoscaling, the
PodDisruptionBudget with more than one pod at rest (scaling.pdb_exists), the role Services with
a candidate (services.canary_service_exists, services.stable_service_exists) and a router's
objects with that router. One that is live but no longer wanted is deleted, so a promotion or a
rollback leaves the ModelDeployment with what it needs at rest and nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modeldeploy.core.children import HPA, HTTP_ROUTE, PDB, ChildKind
from modeldeploy.core.desired.services import role_services


def optional_children(owner: str, routed: Iterable[ChildKind]) -> list[tuple[str, str]]:
    """(kind, name) of every child that comes and goes; `routed`: the kinds routers write
    (traffic.ROUTED_KINDS, passed in since routers sit above the builders)."""
    named = [HPA, PDB, *routed]
    return [*((k.kind, owner) for k in named), *role_services(owner)]


def unwanted(
    optional: Iterable[tuple[str, str]],
    wanted: Iterable[dict[str, Any]],
    live: Mapping[tuple[str, str], Any],
) -> list[tuple[str, str]]:
    """The optional children that are live but not among the `wanted` objects: to delete.

    A Service a live HTTPRoute still names as a backend waits: writes go before deletions, so
    the route that drops it is applied first, and the Service goes on the reconcile that sees
    that route, not while the gateway may still send it requests.

    >>> svc = {"kind": "Service", "metadata": {"name": "fraud"}}
    >>> live = {("Service", "fraud"): {}, ("Service", "fraud-canary"): {}}
    >>> unwanted([("Service", "fraud-canary"), ("HorizontalPodAutoscaler", "fraud")], [svc], live)
    [('Service', 'fraud-canary')]
    """
    keep = {(obj["kind"], obj["metadata"]["name"]) for obj in wanted}
    keep |= {("Service", name) for name in _route_backends(live)}
    return [key for key in optional if key not in keep and key in live]


def _route_backends(live: Mapping[tuple[str, str], Any]) -> set[str]:
    """Names of the Services live HTTPRoutes send requests to (weighted or mirrored)."""
    names: set[str] = set()
    for (kind, _), obj in live.items():
        if kind != HTTP_ROUTE.kind:
            continue
        for rule in obj.get("spec", {}).get("rules", []):
            names.update(ref["name"] for ref in rule.get("backendRefs", []))
            for f in rule.get("filters", []):
                names.add(f.get("requestMirror", {}).get("backendRef", {}).get("name", ""))
    return names
