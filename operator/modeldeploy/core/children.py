"""The kinds of object a ModelDeployment owns, in one table.

The builders write these apiVersions and kinds, the runtime watches one index per kind and
deletes by kind, and late_kinds waits for the CRD of any kind whose group is not built in. A new
child kind is one row here (and its RBAC rule in the chart, which a chart test checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class ChildKind:
    """One kind of child object, as the API server's discovery names it."""

    kind: str
    group: str
    """API group; empty for the core group (Services)."""
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """apiVersion as objects carry it: `group/version`, or the version alone in the core.

        >>> DEPLOYMENT.api_version, SERVICE.api_version
        ('apps/v1', 'v1')
        """
        return f"{self.group}/{self.version}" if self.group else self.version


DEPLOYMENT: Final = ChildKind("Deployment", "apps", "v1", "deployments")
SERVICE: Final = ChildKind("Service", "", "v1", "services")
HPA: Final = ChildKind("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers")
PDB: Final = ChildKind("PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets")
HTTP_ROUTE: Final = ChildKind("HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes")
JOB: Final = ChildKind("Job", "batch", "v1", "jobs")
"""Verification hooks (spec.rollout.hooks): one Job per hook run."""
CHILD_KINDS: Final = (DEPLOYMENT, SERVICE, HPA, PDB, HTTP_ROUTE, JOB)
_BY_KIND: Final = {k.kind: k for k in CHILD_KINDS}


def child_kind(kind: str) -> ChildKind:
    """The table's row for a kind name; KeyError for a kind that is no child.

    >>> child_kind("HTTPRoute").plural
    'httproutes'
    """
    return _BY_KIND[kind]
