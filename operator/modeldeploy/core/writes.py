"""Which desired children must be written, under which field manager, and what a write repairs.

Server-side apply owns exactly the fields sent and the API server adds defaults around them, so
a child is in place when every field the operator would send is in the live object already
(diff.is_subset): then nothing is written, and an idle operator writes nothing. Each full write
carries the hash of what was applied, so a live child that has the hash but differs was edited
by hand (a repair to report), while one with another hash is the operator's own change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modeldeploy.api.status import ModelDeploymentStatus
from modeldeploy.core.children import DEPLOYMENT
from modeldeploy.core.diff import is_subset
from modeldeploy.core.naming import APPLIED_ANNOTATION, ROLE_ANNOTATION


@dataclass(frozen=True)
class Write:
    """One server-side apply for reconcile to send."""

    obj: dict[str, Any]
    scale_only: bool = False
    """Only the replica count of an old revision, sent under the scale field manager
    (kube.SCALE_MANAGER): under the main manager it would drop the pod template that manager
    owns."""
    repair: str | None = None
    """Set when the write restores a child edited or deleted by hand (posted as a Repaired
    Event)."""


def writes(
    wanted: Iterable[tuple[dict[str, Any], bool]],
    live: dict[tuple[str, str], dict[str, Any]],
    before: ModelDeploymentStatus,
) -> list[Write]:
    """The writes for `wanted` (each desired object, and whether it is scale-only) that the
    `live` children (by kind and name) do not already carry; `before` is the stored status."""
    out = []
    for desired, scale_only in wanted:
        kind, name = desired["kind"], desired["metadata"]["name"]
        current = live.get((kind, name))
        if scale_only:  # an old revision: the plan knows it from its live Deployment
            if current is None or not is_subset(desired, current):
                out.append(Write(desired, scale_only=True))
            continue
        stamped, digest = _stamped(desired)
        if current is not None and is_subset(stamped, current):
            continue
        repair = None
        if current is not None:
            hand_edited = _applied_hash(current) == digest and not _only_rescaled(stamped, current)
            repair = f"{kind} {name} was changed by hand; restored" if hand_edited else None
        elif before.observed_generation and _was_ours(desired, before):
            repair = f"{kind} {name} was missing; recreated"
        out.append(Write(stamped, repair=repair))
    return out


def _stamped(obj: dict[str, Any]) -> tuple[dict[str, Any], str]:
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
    meta = obj["metadata"]
    annotations = {**(meta.get("annotations") or {}), APPLIED_ANNOTATION: digest}
    return {**obj, "metadata": {**meta, "annotations": annotations}}, digest


def _applied_hash(live: dict[str, Any]) -> str | None:
    annotations = live.get("metadata", {}).get("annotations") or {}
    found: str | None = annotations.get(APPLIED_ANNOTATION)
    return found


def _only_rescaled(desired: dict[str, Any], live: dict[str, Any]) -> bool:
    """Does `live` differ from `desired` only in spec.replicas? An old revision scaled down by
    the scale-only manager and now wanted again looks like that: our own change, not a hand
    edit to report as repaired.

    >>> d = {"kind": "Deployment", "spec": {"replicas": 2, "template": {"x": 1}}}
    >>> _only_rescaled(d, {"kind": "Deployment", "spec": {"replicas": 0, "template": {"x": 1}}})
    True
    >>> _only_rescaled(d, {"kind": "Deployment", "spec": {"replicas": 0, "template": {"x": 2}}})
    False
    """
    spec = {k: v for k, v in desired.get("spec", {}).items() if k != "replicas"}
    return is_subset({**desired, "spec": spec}, live)


def _was_ours(desired: dict[str, Any], before: ModelDeploymentStatus) -> bool:
    """Did an earlier reconcile already create this child? (Then its absence is drift.) The
    role Services exist only while a candidate does: new with each rollout, not recreated."""
    kind, name = desired["kind"], desired["metadata"]["name"]
    role = (desired["metadata"].get("annotations") or {}).get(ROLE_ANNOTATION)
    if role in ("stable", "canary"):
        return before.canary_revision is not None
    if kind != DEPLOYMENT.kind:
        return before.stable_revision is not None
    return any(r is not None and r.name == name
               for r in (before.stable_revision, before.canary_revision))  # fmt: skip
