"""HorizontalPodAutoscaler for the stable revision and PodDisruptionBudget for all pods.

The PodDisruptionBudget exists only where it protects something (pdb_exists).
"""

from __future__ import annotations

from typing import Any

from modeldeploy.api.spec import Autoscaling
from modeldeploy.core.children import DEPLOYMENT, HPA, PDB
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.naming import owner_selector


def build_hpa(owner: Owner, autoscaling: Autoscaling, target: str) -> dict[str, Any]:
    """autoscaling/v2 HPA on CPU utilization, aimed at the stable revision's Deployment.

    Scale-down waits 5 minutes of lower load (the default) so a brief lull does not drop pods
    the next burst needs; scale-up is immediate.
    """
    return {
        "apiVersion": HPA.api_version,
        "kind": HPA.kind,
        "metadata": owner.metadata(owner.name),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": DEPLOYMENT.api_version,
                "kind": DEPLOYMENT.kind,
                "name": target,
            },
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": autoscaling.target_cpu_utilization,
                        },
                    },
                }
            ],
        },
    }


def pdb_exists(replicas: int, autoscaling: Autoscaling | None) -> bool:
    """Whether the PodDisruptionBudget protects anything: only with more than one serving pod
    at rest. Its maxUnavailable of 1 lets a drain take a lone pod anyway, so with one replica
    (or an HPA allowed down to one) it would be an object guarding nothing. `replicas`: the
    spec's count, used when there is no `autoscaling`.

    >>> from modeldeploy.api.spec import Autoscaling
    >>> pdb_exists(1, None), pdb_exists(2, None)
    (False, True)
    >>> hpa = Autoscaling(min_replicas=1, max_replicas=4)
    >>> pdb_exists(3, hpa), pdb_exists(1, hpa.model_copy(update={"min_replicas": 2}))
    (False, True)
    """
    return (autoscaling.min_replicas if autoscaling else replicas) > 1


def build_pdb(owner: Owner) -> dict[str, Any]:
    """At most one serving pod down at a time during voluntary disruptions (node drains).

    maxUnavailable rather than minAvailable: with a single replica a drain still proceeds (a
    short outage the user chose with replicas: 1) instead of blocking the node forever.
    """
    return {
        "apiVersion": PDB.api_version,
        "kind": PDB.kind,
        "metadata": owner.metadata(owner.name),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": owner_selector(owner.name)},
        },
    }
