"""The Services: `NAME` for clients, always; `NAME-canary` and `NAME-stable` during a rollout.

The entry Service `NAME` is the one clients call. The router says which pods it selects: under
replica-ratio routing every revision's pods while the candidate takes a weighted share (the
replica counts split the traffic), else the stable revision's only; under Gateway API always
the stable revision's only (the HTTPRoute does the splitting, and `NAME` is its stable backend).
So at rest the entry Service alone reaches the stable revision, and no other Service is needed.

While a candidate exists (a rollout under way or paused), two role Services select one
revision each by label: `NAME-canary`, the preview (status.previewUrl, hooks, the HTTPRoute's
candidate backend), and `NAME-stable`, the stable side alone (under replica ratio the entry
Service mixes both sides). Once the candidate is promoted or rolled back both are deleted by the
plan like any child no longer wanted. Promotion only changes a selector; no pod is restarted or
relabelled.
"""

from __future__ import annotations

from typing import Any

from modeldeploy.core.children import SERVICE
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.naming import (
    ROLE_ANNOTATION,
    SERVICE_PORT,
    canary_service,
    entry_service,
    owner_selector,
    revision_selector,
    stable_service,
)


def _service(owner: Owner, name: str, selector: dict[str, str], role: str) -> dict[str, Any]:
    return {
        "apiVersion": SERVICE.api_version,
        "kind": SERVICE.kind,
        "metadata": owner.metadata(name, annotations={ROLE_ANNOTATION: role}),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {
                    "name": "http",
                    "port": SERVICE_PORT,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                },
            ],
        },
    }


def canary_service_exists(canary: str | None) -> bool:
    """`NAME-canary` is the preview: the candidate alone, for prePromotion checks, BlueGreen's
    tests before the switch, a Gateway API route's candidate backend and status.previewUrl.
    It exists only while there is a candidate; after a promotion or a rollback nothing reaches
    it (the plan shows no previewUrl then), so it is deleted.

    >>> canary_service_exists("fraud-7d9f"), canary_service_exists(None)
    (True, False)
    """
    return canary is not None


def stable_service_exists(canary: str | None) -> bool:
    """`NAME-stable` is the stable revision alone, while a candidate runs beside it: under
    replica ratio the entry Service then selects both sides, so this is the one way to reach
    (and compare) the stable side by itself. At rest the entry Service selects exactly the
    stable revision under every router, so a second Service with the same pods is not made.

    >>> stable_service_exists("fraud-7d9f"), stable_service_exists(None)
    (True, False)
    """
    return canary is not None


def build_services(
    owner: Owner, stable: str, canary: str | None, *, entry: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The Services wanted now: the entry Service, and the role Services while a candidate
    exists. `entry`: the entry Service's selector, as the router says (by default every
    revision's pods, as under replicaRatio with a weighted canary)."""
    entry = entry or owner_selector(owner.name)
    services = [_service(owner, entry_service(owner.name), entry, "entry")]
    if stable_service_exists(canary):
        services.append(
            _service(
                owner, stable_service(owner.name), revision_selector(owner.name, stable), "stable"
            )
        )
    if canary is not None and canary_service_exists(canary):
        services.append(
            _service(
                owner, canary_service(owner.name), revision_selector(owner.name, canary), "canary"
            )
        )
    return services


def role_services(owner: str) -> list[tuple[str, str]]:
    """(kind, name) of the Services that come and go with a candidate: what the plan deletes
    when they are no longer wanted."""
    return [(SERVICE.kind, stable_service(owner)), (SERVICE.kind, canary_service(owner))]
