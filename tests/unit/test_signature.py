"""The signature comparison (modeldeploy.core.signature): which changes break clients, and which
are only reported. Inputs and outputs break in opposite directions for a dimension that turns
free or fixed, so each rule is tested on both roles."""

from __future__ import annotations

import doctest

import pytest

from modeldeploy.core import signature
from modeldeploy.core.signature import (
    Finding,
    Signature,
    Tensor,
    breaking,
    compare,
    parse_metadata,
    summary,
)

X = Tensor("x", "FP32", (-1, 4))
MASK = Tensor("mask", "BOOL", (-1, 4))
Y = Tensor("y", "FP32", (-1, 1))
SERVING = Signature((X, MASK), (Y,))


def candidate(inputs: tuple[Tensor, ...] = (X, MASK), outputs: tuple[Tensor, ...] = (Y,)):
    return Signature(inputs, outputs)


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(signature).failed == 0


def test_the_same_signature_has_no_finding() -> None:
    assert compare(SERVING, candidate()) == []


def test_input_order_is_not_a_change() -> None:
    """OIP addresses tensors by name: a reordered input list is the same signature."""
    assert compare(SERVING, candidate(inputs=(MASK, X))) == []


def test_removed_input_breaks() -> None:
    found = only(compare(SERVING, candidate(inputs=(X,))))
    assert (found.kind, found.role, found.tensor, found.breaking) == (
        "removed",
        "input",
        "mask",
        True,
    )
    assert (found.before, found.after) == ("BOOL [-1,4]", None)


def test_renamed_input_breaks_and_names_both() -> None:
    found = only(compare(SERVING, candidate(inputs=(Tensor("features", "FP32", (-1, 4)), MASK))))
    assert (found.kind, found.tensor, found.before, found.after, found.breaking) == (
        "renamed",
        "x",
        "x",
        "features",
        True,
    )
    assert summary(found) == "input x renamed to features"


def test_an_ambiguous_rename_is_a_removal_and_an_addition() -> None:
    """A tensor that left and one that came with another shape: no guess that they are one."""
    findings = compare(SERVING, candidate(inputs=(Tensor("features", "FP32", (-1, 8)), MASK)))
    assert [(f.kind, f.tensor, f.breaking) for f in findings] == [
        ("removed", "x", True),
        ("added", "features", True),
    ]


def test_datatype_change_breaks_inputs_and_outputs() -> None:
    found = only(compare(SERVING, candidate(inputs=(Tensor("x", "FP64", (-1, 4)), MASK))))
    assert (found.kind, found.role, found.before, found.after, found.breaking) == (
        "datatype",
        "input",
        "FP32 [-1,4]",
        "FP64 [-1,4]",
        True,
    )
    found = only(compare(SERVING, candidate(outputs=(Tensor("y", "FP16", (-1, 1)),))))
    assert (found.kind, found.role, found.breaking) == ("datatype", "output", True)


@pytest.mark.parametrize("role", ["input", "output"])
def test_fixed_dimension_changed_breaks(role: str) -> None:
    before = Signature((X,), (Tensor("y", "FP32", (-1, 3)),))
    if role == "input":
        after = Signature((Tensor("x", "FP32", (-1, 8)),), before.outputs)
    else:
        after = Signature(before.inputs, (Tensor("y", "FP32", (-1, 5)),))
    found = only(compare(before, after))
    assert (found.kind, found.role, found.breaking) == ("shape", role, True)
    assert "axis 1: fixed" in found.reason


def test_input_dimension_turning_free_does_not_break() -> None:
    """Clients send 4 wide rows; a model that takes any width still takes them."""
    found = only(compare(SERVING, candidate(inputs=(Tensor("x", "FP32", (-1, -1)), MASK))))
    assert (found.kind, found.breaking) == ("shape", False)
    assert "accepts more" in found.reason


def test_input_dimension_turning_fixed_breaks() -> None:
    """Clients sending batches of 8 are refused by a model fixed at batch 1."""
    found = only(compare(SERVING, candidate(inputs=(Tensor("x", "FP32", (1, 4)), MASK))))
    assert (found.kind, found.breaking) == ("shape", True)


def test_output_dimension_turning_free_breaks() -> None:
    """Clients reading one score per row may get any number."""
    found = only(compare(SERVING, candidate(outputs=(Tensor("y", "FP32", (-1, -1)),))))
    assert (found.kind, found.role, found.breaking) == ("shape", "output", True)


def test_output_dimension_turning_fixed_does_not_break() -> None:
    before = Signature((X,), (Tensor("y", "FP32", (-1, -1)),))
    found = only(compare(before, Signature((X,), (Tensor("y", "FP32", (-1, 2)),))))
    assert (found.kind, found.breaking) == ("shape", False)


@pytest.mark.parametrize("role", ["input", "output"])
def test_rank_change_breaks(role: str) -> None:
    three = Tensor(
        "x" if role == "input" else "y", "FP32", (-1, 4, 1) if role == "input" else (-1,)
    )
    after = candidate(inputs=(three, MASK)) if role == "input" else candidate(outputs=(three,))
    found = only(compare(SERVING, after))
    assert (found.kind, found.breaking) == ("shape", True)
    assert found.reason.endswith(("rank 2 became 3", "rank 2 became 1"))


def test_new_input_is_required_so_it_breaks() -> None:
    found = only(compare(SERVING, candidate(inputs=(X, MASK, Tensor("age", "INT64", (-1,))))))
    assert (found.kind, found.role, found.tensor, found.breaking) == ("added", "input", "age", True)
    assert found.after == "INT64 [-1]"


def test_new_output_is_reported_not_breaking() -> None:
    findings = compare(SERVING, candidate(outputs=(Y, Tensor("p", "FP32", (-1, 3)))))
    found = only(findings)
    assert (found.kind, found.role, found.tensor, found.breaking) == ("added", "output", "p", False)
    assert breaking(findings) == []


def test_removed_output_breaks() -> None:
    before = Signature((X,), (Y, Tensor("p", "FP32", (-1, 3))))
    found = only(compare(before, Signature((X,), (Y,))))
    assert (found.kind, found.role, found.tensor, found.breaking) == (
        "removed",
        "output",
        "p",
        True,
    )


def test_findings_are_plain_data() -> None:
    found = only(compare(SERVING, candidate(inputs=(X,))))
    assert found.as_dict() == {
        "kind": "removed",
        "role": "input",
        "tensor": "mask",
        "before": "BOOL [-1,4]",
        "after": None,
        "breaking": True,
        "reason": "input 'mask' is gone: requests that send it are refused",
    }


def test_parse_metadata_reads_what_a_server_answers() -> None:
    metadata = {
        "name": "fraud",
        "versions": ["v7"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
    }
    assert parse_metadata(metadata) == Signature((X,), (Y,))


@pytest.mark.parametrize(
    ("metadata", "named"),
    [
        ({"outputs": []}, "'inputs' must be a list"),
        ({"inputs": [{"datatype": "FP32", "shape": [1]}], "outputs": []}, "inputs[0].name"),
        ({"inputs": [], "outputs": [{"name": "y", "shape": [1]}]}, "outputs[0].datatype"),
        (
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}], "outputs": []},
            "inputs[0].shape",
        ),
        (
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [True]}], "outputs": []},
            "inputs[0].shape",
        ),
    ],
)
def test_parse_metadata_names_the_bad_field(metadata: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        parse_metadata(metadata)
