"""What the operator saw of one ModelDeployment's children: the plain data `plan()` decides from.

The runtime hands the children from its watch indexes (plain dicts) to `LiveChildren.index`,
with a function that says whether an object a spec refers to exists (the one API read a
reconcile makes); the pure core reads the result. Tests build these by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.core.children import DEPLOYMENT
from modeldeploy.core.naming import (
    MODEL_URI_ANNOTATION,
    MODEL_VERSION_ANNOTATION,
    REVISION_LABEL,
)
from modeldeploy.core.references import Reference, references


@dataclass(frozen=True)
class LiveRevision:
    """A live revision Deployment and how far its pods got."""

    name: str
    replicas: int
    ready_replicas: int = 0
    available_replicas: int = 0
    updated_replicas: int = 0
    created: datetime | None = None
    model_version: str | None = None
    model_uri: str | None = None
    failed_reason: str | None = None
    """Set when the Deployment reports ProgressDeadlineExceeded or a ReplicaFailure."""

    @property
    def fully_ready(self) -> bool:
        return self.replicas > 0 and self.ready_replicas >= self.replicas

    @classmethod
    def of(cls, deployment: dict[str, Any]) -> LiveRevision:
        """A revision Deployment as the API server returns it."""
        meta, spec, status = (deployment.get(k) or {} for k in ("metadata", "spec", "status"))
        annotations = meta.get("annotations") or {}
        failed = None
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "Progressing"
                and cond.get("reason") == "ProgressDeadlineExceeded"
            ):
                failed = cond.get("message") or "progress deadline exceeded"
            if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
                failed = _name_field(cond.get("message") or "pods could not be created")
        created = meta.get("creationTimestamp")
        return cls(
            name=meta["name"],
            replicas=int(spec.get("replicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            available_replicas=int(status.get("availableReplicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            created=_time(created) if created else None,
            model_version=annotations.get(MODEL_VERSION_ANNOTATION) or None,
            model_uri=annotations.get(MODEL_URI_ANNOTATION),
            failed_reason=failed,
        )


_POD_REFUSALS: tuple[tuple[str, str], ...] = (
    ("priorityclass", "spec.serving.priorityClassName"),
    ("serviceaccount", "spec.serving.serviceAccountName"),
    ("exceeded quota", "spec.serving.resources"),
    ("limitrange", "spec.serving.resources"),
    ("per container", "spec.serving.resources"),
)
"""Why the API server refuses a revision's pods, by a word of its answer, and the spec field
that causes it: the condition then names the field to change, not only the pod it refused."""


def _name_field(answer: str) -> str:
    """A pod refusal prefixed with the spec field behind it, when the answer says which.

    >>> _name_field('pods "x" is forbidden: no PriorityClass with name hi was found')
    'spec.serving.priorityClassName: pods "x" is forbidden: no PriorityClass with name hi was found'
    >>> _name_field("pods could not be created")
    'pods could not be created'
    """
    lowered = answer.lower()
    for word, field_path in _POD_REFUSALS:
        if word in lowered:
            return f"{field_path}: {answer}"
    return answer


def _time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


@dataclass(frozen=True)
class Problem:
    """A spec problem only the operator can see (a Secret that does not exist)."""

    field: str
    reason: str
    message: str


@dataclass(frozen=True)
class LiveChildren:
    """Everything the plan needs from the cluster."""

    revisions: dict[str, LiveRevision] = field(default_factory=dict)
    children: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """Live children by (kind, name), for comparing with what is desired."""
    problems: list[Problem] = field(default_factory=list)
    """Objects the spec refers to that do not exist."""

    @classmethod
    def index(
        cls,
        children: Iterable[dict[str, Any]],
        spec: ModelDeploymentSpec,
        namespace: str,
        exists: Callable[[str, str, str], bool],
    ) -> LiveChildren:
        """Index the children and check the spec's references (with the runtime's `exists`)."""
        by_key = {(c["kind"], c["metadata"]["name"]): c for c in children}
        revisions = {
            name: LiveRevision.of(body)
            for (kind, name), body in by_key.items()
            if kind == DEPLOYMENT.kind and REVISION_LABEL in (body["metadata"].get("labels") or {})
        }
        refs = references(spec)
        problems = [_missing(r, namespace) for r in refs if not exists(r.kind, namespace, r.name)]
        return cls(revisions=revisions, children=by_key, problems=problems)


def _missing(ref: Reference, namespace: str) -> Problem:
    if ref.kind == "CustomResourceDefinition":
        hint = "install the Gateway API CRDs and an implementation, or use replicaRatio"
        return Problem(ref.field, "CRDNotInstalled", f"{ref.name} is not installed: {hint}")
    where = f'{ref.kind} "{ref.name}" not found in namespace {namespace}'
    return Problem(ref.field, f"{ref.kind}NotFound", f"{where}: create it, or change {ref.field}")
