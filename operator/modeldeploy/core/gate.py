"""The signature gate: a candidate whose model breaks the stable one's clients gets no traffic.

`modeldeploy check-model` is the gate a CI job runs; this is the same comparison
(core/signature.py) run by the operator on what the pods really serve, before a rollout moves
any traffic. The runtime reads the OIP v2 metadata of one Ready pod of the candidate and of the
stable revision (runtime/providers/signatures.py, once per revision) when `wanted` says so, and
`judge` turns the two reads and `spec.rollout.allowSignatureChange` into a `GateVerdict`:

- `pass`: nothing breaks (additions are reported in a Normal Event), or the spec allows the
  change (a Warning Event lists what breaks), or the metadata cannot be read at all (a Warning
  Event says why, and that the check was skipped): the rollout goes on as before;
- `wait`: a side is not read yet, or its read failed and is being retried: the candidate is
  sized for its step but takes no live traffic (the reader gives up on a failing pod after a
  bounded time, so a wait always ends);
- `refuse`: a breaking change, not allowed. The rollout (core/rollout.py) sets the candidate
  aside as a rollback does (`rolledBackRevision`: not tried again until the spec changes or
  `modeldeploy retry`), with Degraded=True reason `IncompatibleSignature` and a message that
  names each tensor and the change, and the fix; `refusal` carries that condition on while the
  refused revision is still the one the spec asks for.

The gate runs only while a candidate has not begun its steps (`status.stepStartedAt` unset):
a rollout already moving traffic, or one started by an operator before this gate existed, is
never held back by a read that fails later.

Pure: plain data in, plain data out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from modeldeploy.api.status import ModelDeploymentStatus
from modeldeploy.core.conditions import ConditionUpdate
from modeldeploy.core.events import Event
from modeldeploy.core.live import LiveRevision
from modeldeploy.core.signature import Finding, Signature, breaking, compare, summary

REASON: Final = "IncompatibleSignature"
"""The Degraded reason and the Event reason of a refused candidate."""
FIX: Final = "set spec.rollout.allowSignatureChange: true to roll it out anyway"
Outcome = Literal["pass", "wait", "refuse"]


@dataclass(frozen=True)
class Unreadable:
    """A revision's metadata that could not be read. `final`: the reader gave up (the pods ask
    for credentials the pod proxy cannot pass, the answer is not OIP metadata, or reads kept
    failing): the check is skipped. Otherwise it is retried and the candidate waits."""

    reason: str
    final: bool


Read = Signature | Unreadable


@dataclass(frozen=True)
class SignatureReads:
    """What the runtime read for one candidate: the stable and the candidate revisions' names
    and signatures (None: not read yet). `new`: a side's outcome was settled by this read, so
    its Events are posted now and not on every later reconcile."""

    stable: str
    canary: str
    before: Read | None
    after: Read | None
    new: bool = True


@dataclass(frozen=True)
class GateVerdict:
    """What the gate says of a candidate, with the Events to post and the findings behind it."""

    outcome: Outcome
    message: str
    events: tuple[Event, ...] = ()
    findings: tuple[Finding, ...] = ()


def wanted(
    status: ModelDeploymentStatus, target: str, revisions: Mapping[str, LiveRevision]
) -> tuple[str, str] | None:
    """(stable, candidate) to read now, or None: only for a candidate that has a Ready pod and
    has not begun its steps, beside a stable revision (the first revision is not checked: it
    has nothing to be compatible with), and not one already set aside.

    >>> from modeldeploy.api.status import RevisionRef
    >>> up = {n: LiveRevision(name=n, replicas=1, ready_replicas=1) for n in ("m-a", "m-b")}
    >>> status = ModelDeploymentStatus(stable_revision=RevisionRef(name="m-a"))
    >>> wanted(status, "m-b", up)
    ('m-a', 'm-b')
    >>> wanted(status, "m-a", up) is None  # nothing new
    True
    >>> wanted(ModelDeploymentStatus(), "m-b", up) is None  # the first revision
    True
    """
    stable = status.stable_revision.name if status.stable_revision else None
    refused = status.rolled_back_revision.name if status.rolled_back_revision else None
    state = revisions.get(target)
    if stable is None or stable not in revisions or target in (stable, refused):
        return None
    if state is None or state.ready_replicas == 0:
        return None
    began = (
        status.canary_revision is not None
        and status.canary_revision.name == target
        and status.step_started_at is not None
    )
    return None if began else (stable, target)


def judge(reads: SignatureReads, allow: bool) -> GateVerdict:
    """The verdict on `reads.canary` against `reads.stable`; Events only when `reads.new`.

    >>> from modeldeploy.core.signature import Tensor
    >>> x, y = Tensor("x", "FP32", (-1, 4)), Tensor("y", "FP32", (-1,))
    >>> old = Signature((x,), (y,))
    >>> dropped = Signature((), (y,))
    >>> verdict = judge(SignatureReads("m-a", "m-b", old, dropped), allow=False)
    >>> verdict.outcome, verdict.message
    ('refuse', 'signature check: input x removed (was FP32 [-1,4]); set spec.rollout.allowSignatureChange: true to roll it out anyway')
    >>> judge(SignatureReads("m-a", "m-b", old, dropped), allow=True).outcome
    'pass'
    >>> judge(SignatureReads("m-a", "m-b", old, None), allow=False).outcome
    'wait'
    """  # noqa: E501
    sides = (("stable", reads.stable, reads.before), ("candidate", reads.canary, reads.after))
    for role, revision, read in sides:
        if read is None:
            return GateVerdict("wait", f"reading the model metadata of the {role} revision "
                                       f"{revision} before it takes traffic")  # fmt: skip
        if isinstance(read, Unreadable) and not read.final:
            return GateVerdict("wait", f"signature check waits for the {role} revision "
                                       f"{revision}: {read.reason}")  # fmt: skip
    for role, revision, read in sides:
        if isinstance(read, Unreadable):
            said = (f"signature check skipped for revision {reads.canary}: the {role} revision "
                    f"{revision}'s model metadata cannot be read ({read.reason}); run "
                    "`modeldeploy check-model` against the model file in CI instead")  # fmt: skip
            return GateVerdict("pass", said, _once(reads, "Warning", "SignatureCheckSkipped", said))
    if not isinstance(reads.before, Signature) or not isinstance(reads.after, Signature):
        raise AssertionError("both sides are read signatures here")  # (for the type checker)
    findings = tuple(compare(reads.before, reads.after))
    broken = breaking(findings)
    if broken and not allow:
        said = "signature check: " + "; ".join(summary(f) for f in broken) + f"; {FIX}"
        return GateVerdict("refuse", said, (Event("Warning", REASON, said),), findings)
    if broken:
        said = (f"revision {reads.canary} breaks clients of {reads.stable} and rolls out as "
                "spec.rollout.allowSignatureChange allows: "
                + "; ".join(summary(f) for f in findings))  # fmt: skip
        return GateVerdict("pass", said, _once(reads, "Warning", "SignatureChangeAllowed", said),
                           findings)  # fmt: skip
    if findings:
        said = (f"revision {reads.canary} keeps the clients of {reads.stable} working: "
                + "; ".join(summary(f) for f in findings))  # fmt: skip
        return GateVerdict("pass", said, _once(reads, "Normal", "SignatureChanged", said),
                           findings)  # fmt: skip
    return GateVerdict("pass", f"revision {reads.canary} has the signature of {reads.stable}")


def refusal(status: ModelDeploymentStatus, target: str) -> ConditionUpdate | None:
    """The Degraded condition of a refused candidate, carried on while the spec still asks for
    it (it is set aside, so nothing reads it again): None once the spec changes or the user
    runs `modeldeploy retry`."""
    refused = status.rolled_back_revision.name if status.rolled_back_revision else None
    if refused != target:
        return None
    for condition in status.conditions:
        if (
            condition.type == "Degraded"
            and condition.status == "True"
            and (condition.reason == REASON)
        ):
            return ConditionUpdate("Degraded", "True", REASON, condition.message)
    return None


def _once(reads: SignatureReads, kind: Literal["Normal", "Warning"], reason: str,
          message: str) -> tuple[Event, ...]:  # fmt: skip
    return (Event(kind, reason, message),) if reads.new else ()
