"""Which model bytes each revision served: the digest its pods report, kept in the status.

The serving image computes the sha256 of every model file it loads (and refuses one that does
not match a `spec.model.sha256` pin), and exposes it on `/metrics` as the `sha256` label of
`modelserve_model_info`. The runtime reads it once per revision, when all the revision's pods
are Ready (`wanted`), and `plan()` records it on the revision's status entries and history
lines, where an auditor reads exactly which bytes served (`judge`, `recorded`, `backfill`).

Pods of one revision that report different bytes (an unpinned URI whose content changed
between two pod starts) are a finding: the status keeps every digest seen, never one of them
silently, and a Warning Event says so once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from modeldeploy.api.status import HistoryEntry, ModelDeploymentStatus, RevisionRef
from modeldeploy.core.analysis.samples import parse_exposition
from modeldeploy.core.events import Event
from modeldeploy.core.live import LiveRevision

INFO_SAMPLE: Final = "modelserve_model_info"
"""The serving image's info metric; its `sha256` label is the served bytes' digest."""
MISMATCH_REASON: Final = "ModelDigestMismatch"
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")

Reports = Mapping[str, str | None]
"""One read of a revision: pod name → the digest it reported (None: it reported none)."""


@dataclass(frozen=True)
class Digest:
    """What is known of a revision's bytes: one digest, or the different ones its pods showed."""

    sha256: str | None = None
    conflict: tuple[str, ...] = ()

    def on(self, ref: RevisionRef) -> RevisionRef:
        """`ref` carrying this digest."""
        return ref.model_copy(update={
            "model_sha256": self.sha256, "model_sha256_conflict": list(self.conflict) or None,
        })  # fmt: skip


def short(sha256: str) -> str:
    """The first 12 hex digits, as `modeldeploy status` and messages show a digest.

    >>> short("9f2c" + "0" * 60)
    '9f2c00000000'
    """
    return sha256[:12]


def reported(metrics: str) -> str | None:
    """The digest a pod's `/metrics` text reports (the `sha256` label of
    `modelserve_model_info`), lower-case; None when it reports none. ValueError when the text
    is not the exposition format.

    >>> reported('modelserve_model_info{model="m",sha256="' + "AB" * 32 + '",version="1"} 1.0\\n')
    'abababababababababababababababababababababababababababababababab'
    >>> reported("modelserve_ready 1.0\\n") is None
    True
    """
    for (_, labels), _value in parse_exposition(metrics, samples={INFO_SAMPLE}).items():
        digest = dict(labels).get("sha256", "").lower()
        if _HEX64.match(digest):
            return digest
    return None


def recorded(status: ModelDeploymentStatus) -> dict[str, Digest]:
    """Digests the status already holds, by revision: from its history and its revision
    entries (those win: they are the latest word), so every status the plan writes carries
    them on, whichever role the revision moves to."""
    known: dict[str, Digest] = {}
    for line in status.history:
        if line.model_sha256:
            known[line.revision] = Digest(line.model_sha256)
    refs = (status.stable_revision, status.canary_revision, status.previous_revision,
            status.rolled_back_revision)  # fmt: skip
    for ref in refs:
        if ref and (ref.model_sha256 or ref.model_sha256_conflict):
            known[ref.name] = Digest(ref.model_sha256, tuple(ref.model_sha256_conflict or ()))
    return known


def wanted(status: ModelDeploymentStatus, revisions: Mapping[str, LiveRevision]) -> list[str]:
    """Revisions whose digest should be read now: serving (stable or canary), every pod they
    should have Ready, and no digest recorded yet. Once recorded, a revision is never read
    again (its pods' bytes do not change; a pin keeps new pods to the same bytes).

    Reading only when all pods are Ready compares every pod the revision has; pods started
    later (a scale-up) are not re-read: without a pin, only the pin makes that a guarantee.
    """
    known = recorded(status)
    names = [ref.name for ref in (status.stable_revision, status.canary_revision) if ref]
    return [
        name
        for name in dict.fromkeys(names)
        if name not in known and name in revisions and revisions[name].fully_ready
    ]


def judge(revision: str, reports: Reports, pin: str | None) -> tuple[Digest | None, list[Event]]:
    """What one read of a revision's pods says: its digest, or a conflict with a Warning Event;
    None when no pod reported a digest (an older serving image: nothing to record).

    `pin`: spec.model.sha256 when the revision is the one the spec asks for (its pods refuse
    other bytes, so a pod reporting other bytes runs something else: also a finding).
    """
    seen = {pod: d.lower() for pod, d in reports.items() if d and _HEX64.match(d.lower())}
    digests = sorted(set(seen.values()))
    if not digests:
        return None, []
    expected = pin.lower() if pin else None
    if len(digests) == 1 and expected in (None, digests[0]):
        return Digest(digests[0]), []
    by_digest = {d: sorted(p for p, x in seen.items() if x == d) for d in digests}
    shown = "; ".join(f"{short(d)} on {_pods(pods)}" for d, pods in by_digest.items())
    message = f"pods of revision {revision} serve different model bytes: {shown}"
    if expected and expected not in digests:
        message += f" (spec.model.sha256 pins {short(expected)})"
    message += ": the status records every digest; pin spec.model.sha256 so pods load the same"
    return Digest(conflict=tuple(digests[:8])), [Event("Warning", MISMATCH_REASON, message)]


def _pods(pods: list[str]) -> str:
    return ", ".join(pods[:3]) + (f" and {len(pods) - 3} more" if len(pods) > 3 else "")


def backfill(history: Iterable[HistoryEntry], found: Mapping[str, Digest]) -> list[HistoryEntry]:
    """History lines of revisions whose digest was just read, given it: a `Deployed` line is
    written before any pod runs, and names the same bytes the digest now tells."""
    out = []
    for line in history:
        digest = found.get(line.revision)
        if digest and digest.sha256 and not line.model_sha256:
            line = line.model_copy(update={"model_sha256": digest.sha256})
        out.append(line)
    return out
