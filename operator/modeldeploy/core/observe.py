"""Live children (as plain dicts) into the plain data `plan()` decides from."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.core.naming import MODEL_URI_ANNOTATION, MODEL_VERSION_ANNOTATION, REVISION_LABEL
from modeldeploy.core.references import Reference, references
from modeldeploy.core.state import Observed, Problem, RevisionState


def revision_state(deployment: dict[str, Any]) -> RevisionState:
    meta, spec, status = (deployment.get(k) or {} for k in ("metadata", "spec", "status"))
    annotations = meta.get("annotations") or {}
    failed = None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            failed = cond.get("message") or "progress deadline exceeded"
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            failed = cond.get("message") or "pods could not be created"
    created = meta.get("creationTimestamp")
    return RevisionState(
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


def _time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def observed(
    children: Iterable[dict[str, Any]],
    spec: ModelDeploymentSpec,
    namespace: str,
    exists: Callable[[str, str, str], bool],
) -> Observed:
    """Index the children and check the spec's references (with the shell's `exists`)."""
    by_key = {(c["kind"], c["metadata"]["name"]): c for c in children}
    revisions = {
        name: revision_state(body)
        for (kind, name), body in by_key.items()
        if kind == "Deployment" and REVISION_LABEL in (body["metadata"].get("labels") or {})
    }
    refs = references(spec)
    problems = [_missing(r, namespace) for r in refs if not exists(r.kind, namespace, r.name)]
    return Observed(revisions=revisions, children=by_key, problems=problems)


def _missing(ref: Reference, namespace: str) -> Problem:
    if ref.kind == "CustomResourceDefinition":
        hint = "install the Gateway API CRDs and an implementation, or use replicaRatio"
        return Problem(ref.field, "CRDNotInstalled", f"{ref.name} is not installed: {hint}")
    where = f'{ref.kind} "{ref.name}" not found in namespace {namespace}'
    return Problem(ref.field, f"{ref.kind}NotFound", f"{where}: create it, or change {ref.field}")
