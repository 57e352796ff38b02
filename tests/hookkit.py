"""A rollout under verification hooks, for the pure hook tests: Job hooks
(tests/unit/test_hooks.py) and webhook hooks (tests/unit/test_webhook_hooks.py) drive the same
plan() loop (tests/rolloutkit.py) from v1 to v2 with the hooks they are about.
"""

from __future__ import annotations

from typing import Any

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.core.plan import target_revision
from modeldeploy.core.settings import Settings
from rolloutkit import OWNER, RATIO, Cluster, spec_for


def with_hooks(spec: ModelDeploymentSpec, **hooks: Any) -> ModelDeploymentSpec:
    """`spec` with spec.rollout.hooks set to `hooks` (by phase, as written in YAML)."""
    wire = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    wire["rollout"]["hooks"] = hooks
    return ModelDeploymentSpec.model_validate(wire)


def rolling(strategy: str, routing: dict[str, Any] = RATIO, **hooks: Any) -> tuple[Cluster, str]:
    """A cluster settled on v1 whose spec now asks for v2, and the candidate revision's name."""
    cluster = Cluster(with_hooks(spec_for("v1", strategy, routing, 2, [20, 50]), **hooks))
    cluster.reconcile()
    cluster.reconcile()
    cluster.spec = with_hooks(spec_for("v2", strategy, routing, 2, [20, 50]), **hooks)
    return cluster, target_revision(OWNER, cluster.spec, Settings())


def reasons(cluster: Cluster) -> list[str]:
    """The reasons of the Events the last plan posted."""
    return [e.reason for e in cluster.last.events] if cluster.last else []
