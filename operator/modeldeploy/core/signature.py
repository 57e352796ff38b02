"""Whether a new model can replace the one serving without breaking its clients.

A model's signature is what its OIP v2 metadata (`GET /v2/models/NAME`) says: each input and
output by name, with its datatype and its shape (-1 for a dimension the model leaves free).
`compare(before, after)` lists every difference between the serving model (`before`) and a
candidate (`after`) as a `Finding`, each marked breaking or not. `modeldeploy check-model` fails
on a breaking finding; the operator reuses the same function before it starts a rollout.

Which changes break a client follows from which way the tensors travel:

- An input is what a client sends. The new model must accept everything the old one did: an
  input removed or renamed breaks every request that sends it (ONNX Runtime refuses an input it
  does not know), and a new input breaks every request that does not send it (every input the
  metadata lists is required: a run without it fails; an input with a default, an initializer
  of the same name, is not listed by ONNX Runtime at all). A fixed dimension that changes size
  breaks; a fixed dimension that becomes free (4 → -1) accepts what it did and more, so it does
  not; a free dimension that becomes fixed (-1 → 1) refuses sizes it took, so it does.
- An output is what a client receives. The new model must still give everything a client may
  read: an output removed or renamed breaks clients that read it (or ask for it by name), a new
  output does not (clients ignore what they did not ask for). A fixed dimension that changes size
  breaks; a free dimension that becomes fixed narrows what clients already handle, so it does
  not; a fixed dimension that becomes free (10 → -1) breaks clients that rely on the size
  (a client reading ten class scores), so it does.
- A datatype change or a change of rank breaks either way: the bytes on the wire change.

Renames are told apart from a removal plus an addition only when the pairing is unambiguous:
exactly one tensor of a role left, exactly one came, with the same datatype and shape.

Pure: plain data in, plain data out; no I/O and no dependency beyond the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

Role = Literal["input", "output"]
Kind = Literal["removed", "renamed", "added", "datatype", "shape"]
FREE: Final = -1
"""A dimension the model leaves free (symbolic or unknown), as OIP metadata writes it."""


@dataclass(frozen=True)
class Tensor:
    """One input or output as OIP metadata describes it."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def describe(self) -> str:
        """Datatype and shape as findings print them.

        >>> Tensor("x", "FP32", (-1, 4)).describe()
        'FP32 [-1,4]'
        """
        return f"{self.datatype} [{','.join(str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class Signature:
    """A model's inputs and outputs, in the order its metadata lists them."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


@dataclass(frozen=True)
class Finding:
    """One difference between two signatures.

    `before` and `after` describe the tensor on each side (`Tensor.describe`; for a rename,
    the names), None where it does not exist; `reason` says in words why it breaks or not."""

    kind: Kind
    role: Role
    tensor: str
    before: str | None
    after: str | None
    breaking: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON output carries it."""
        return asdict(self)


def parse_metadata(metadata: Mapping[str, Any]) -> Signature:
    """The signature in an OIP v2 model metadata object; ValueError naming the field otherwise.

    >>> sig = parse_metadata({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    ...                       "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}]})
    >>> sig.inputs[0]
    Tensor(name='x', datatype='FP32', shape=(-1, 4))
    """

    def tensors(role: str) -> tuple[Tensor, ...]:
        items = metadata.get(f"{role}s")
        if not isinstance(items, list):
            raise ValueError(f"model metadata: '{role}s' must be a list of tensors")
        out = []
        for number, item in enumerate(items):
            where = f"model metadata: {role}s[{number}]"
            if not isinstance(item, Mapping):
                raise ValueError(f"{where} must be an object with name, datatype and shape")
            name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
            if not isinstance(name, str) or not name:
                raise ValueError(f"{where}.name must be a non-empty string")
            if not isinstance(datatype, str) or not datatype:
                raise ValueError(f"{where}.datatype must be a string such as FP32")
            if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= FREE for d in shape
            ):
                raise ValueError(f"{where}.shape must be a list of sizes (-1 for a free one)")
            out.append(Tensor(name, datatype, tuple(shape)))
        return tuple(out)

    return Signature(tensors("input"), tensors("output"))


def compare(before: Signature, after: Signature) -> list[Finding]:
    """Every difference from `before` (serving) to `after` (the candidate): inputs first, then
    outputs, each in `before`'s order with additions last. Empty when nothing changed.

    >>> x4 = Tensor("x", "FP32", (-1, 4))
    >>> y = Tensor("y", "FP32", (-1, 1))
    >>> compare(Signature((x4,), (y,)), Signature((x4,), (y,)))
    []

    An input whose fixed dimension becomes free still takes what clients send:

    >>> [f.breaking for f in compare(Signature((x4,), (y,)),
    ...                              Signature((Tensor("x", "FP32", (-1, -1)),), (y,)))]
    [False]

    the same change on an output breaks clients that count on the size:

    >>> [(f.kind, f.role, f.breaking) for f in compare(
    ...     Signature((x4,), (y,)), Signature((x4,), (Tensor("y", "FP32", (-1, -1)),)))]
    [('shape', 'output', True)]

    An input renamed (one left, one came, same datatype and shape) and an output added:

    >>> for f in compare(Signature((x4,), (y,)),
    ...                  Signature((Tensor("features", "FP32", (-1, 4)),),
    ...                            (y, Tensor("p", "FP32", (-1, 3))))):
    ...     print(f.kind, f.role, f.tensor, f.before, "->", f.after, f.breaking)
    renamed input x x -> features True
    added output p None -> FP32 [-1,3] False

    A datatype change:

    >>> [(f.kind, f.before, f.after) for f in compare(
    ...     Signature((x4,), (y,)), Signature((Tensor("x", "FP64", (-1, 4)),), (y,)))]
    [('datatype', 'FP32 [-1,4]', 'FP64 [-1,4]')]
    """
    return _compare("input", before.inputs, after.inputs) + _compare(
        "output", before.outputs, after.outputs
    )


def breaking(findings: Sequence[Finding]) -> list[Finding]:
    """The findings that break clients (what a gate refuses)."""
    return [f for f in findings if f.breaking]


def summary(finding: Finding) -> str:
    """One line naming the tensor and the change, for messages and conditions.

    >>> summary(Finding("removed", "input", "amount", "FP32 [-1,1]", None, True, "..."))
    'input amount removed (was FP32 [-1,1])'
    >>> summary(Finding("renamed", "input", "x", "x", "features", True, "..."))
    'input x renamed to features'
    """
    head = f"{finding.role} {finding.tensor}"
    if finding.kind == "removed":
        return f"{head} removed (was {finding.before})"
    if finding.kind == "added":
        return f"{head} added ({finding.after})"
    if finding.kind == "renamed":
        return f"{head} renamed to {finding.after}"
    return f"{head}: {finding.before} -> {finding.after}"


def _compare(role: Role, before: Sequence[Tensor], after: Sequence[Tensor]) -> list[Finding]:
    old = {t.name: t for t in before}
    new = {t.name: t for t in after}
    gone = [t for t in before if t.name not in new]
    came = [t for t in after if t.name not in old]
    findings: list[Finding] = []
    renamed = _rename(gone, came)
    for tensor in before:
        if tensor.name in new:
            findings.extend(_changed(role, tensor, new[tensor.name]))
        elif renamed is not None and renamed[0] is tensor:
            findings.append(_renamed(role, tensor, renamed[1]))
        else:
            findings.append(_removed(role, tensor))
    findings.extend(
        _added(role, tensor) for tensor in came if renamed is None or renamed[1] is not tensor
    )
    return findings


def _rename(gone: Sequence[Tensor], came: Sequence[Tensor]) -> tuple[Tensor, Tensor] | None:
    """The (old, new) pair when one tensor left and one came alike: a rename, not a guess."""
    if len(gone) == 1 and len(came) == 1:
        old, new = gone[0], came[0]
        if (old.datatype, old.shape) == (new.datatype, new.shape):
            return old, new
    return None


def _renamed(role: Role, old: Tensor, new: Tensor) -> Finding:
    who = "requests that send it" if role == "input" else "clients that read it"
    return Finding("renamed", role, old.name, old.name, new.name, True,
                   f"{role} {old.name!r} is now called {new.name!r}: {who} by its old name "
                   "fail")  # fmt: skip


def _removed(role: Role, old: Tensor) -> Finding:
    why = ("requests that send it are refused" if role == "input"
           else "clients that read or ask for it fail")  # fmt: skip
    return Finding("removed", role, old.name, old.describe(), None, True,
                   f"{role} {old.name!r} is gone: {why}")  # fmt: skip


def _added(role: Role, new: Tensor) -> Finding:
    if role == "input":
        return Finding("added", role, new.name, None, new.describe(), True,
                       f"new input {new.name!r} is required: requests that do not send it "
                       "fail")  # fmt: skip
    return Finding("added", role, new.name, None, new.describe(), False,
                   f"new output {new.name!r}: clients that do not ask for it are not "
                   "affected")  # fmt: skip


def _changed(role: Role, old: Tensor, new: Tensor) -> list[Finding]:
    found = []
    if old.datatype != new.datatype:
        why = f"{role} {old.name!r} changed datatype from {old.datatype} to {new.datatype}"
        found.append(Finding("datatype", role, old.name, old.describe(), new.describe(), True,
                             why))  # fmt: skip
    if old.shape != new.shape:
        broken, reason = _shape(role, old.shape, new.shape)
        found.append(Finding("shape", role, old.name, old.describe(), new.describe(), broken,
                             f"{role} {old.name!r}: {reason}"))  # fmt: skip
    return found


def _shape(role: Role, old: tuple[int, ...], new: tuple[int, ...]) -> tuple[bool, str]:
    """(breaking, why) for a shape change of one tensor, axis by axis.

    >>> _shape("input", (-1, 4), (-1, 8))
    (True, 'axis 1: fixed 4 became 8')
    >>> _shape("input", (1, 4), (-1, 4))
    (False, 'axis 0: fixed 1 became free (accepts more)')
    >>> _shape("output", (-1, 4), (2, 4))
    (False, 'axis 0: free became fixed 2 (a size clients already handle)')
    >>> _shape("input", (-1, 4), (-1, 4, 1))
    (True, 'rank 2 became 3')
    """
    if len(old) != len(new):
        return True, f"rank {len(old)} became {len(new)}"
    breaks, notes = [], []
    for axis, (was, now) in enumerate(zip(old, new, strict=True)):
        if was == now:
            continue
        if was != FREE and now != FREE:
            breaks.append(f"axis {axis}: fixed {was} became {now}")
        elif was != FREE:  # fixed → free
            if role == "input":
                notes.append(f"axis {axis}: fixed {was} became free (accepts more)")
            else:
                breaks.append(f"axis {axis}: fixed {was} became free (clients may rely on "
                              f"{was})")  # fmt: skip
        elif role == "input":  # free → fixed
            breaks.append(f"axis {axis}: free became fixed {now} (other sizes are refused)")
        else:
            notes.append(f"axis {axis}: free became fixed {now} (a size clients already handle)")
    return bool(breaks), "; ".join(breaks or notes)
