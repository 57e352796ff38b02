"""The Services: `NAME` for clients, `NAME-stable` and `NAME-canary` for one revision each.

With replica-ratio routing the entry Service selects every serving pod of the ModelDeployment,
so traffic splits by replica counts. The role Services select one revision by label; they are
the backends of Gateway API routes and the handle for reading one revision's metrics. Promotion
only changes a selector; no pod is restarted or relabelled.
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


def build_services(
    owner: Owner, stable: str, canary: str | None, *, entry: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Entry, stable and canary Services. Without a canary, `NAME-canary` follows stable, so
    its clients and dashboards never point at nothing. `entry`: the entry Service's selector,
    as the router says (by default every revision's pods, as under replicaRatio)."""
    entry = entry or owner_selector(owner.name)
    return [
        _service(owner, entry_service(owner.name), entry, "entry"),
        _service(
            owner, stable_service(owner.name), revision_selector(owner.name, stable), "stable"
        ),
        _service(
            owner,
            canary_service(owner.name),
            revision_selector(owner.name, canary or stable),
            "canary",
        ),
    ]
