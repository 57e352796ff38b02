"""`modeldeploy check-model`, run as a CI job runs it: the real command in a subprocess, on
models built with onnx.helper here, loaded by real ONNX Runtime through the serving image's code.

The exit code is the contract (0 pass, 1 a check failed, 2 an error), and the JSON output is
what a pipeline reads: both are asserted on every case.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx_models
import pytest
from onnx import TensorProto, helper, numpy_helper

CLI = [sys.executable, "-m", "modeldeploy.cli", "check-model"]


def classifier(
    path: Path,
    *,
    inputs: tuple[tuple[str, int, list[Any]], ...] = (("x", TensorProto.FLOAT, ["batch", 4]),),
    extra_output: bool = False,
) -> Path:
    """`y` [batch, 1] = the row sums of the first input, of its datatype (other inputs are
    declared and unused); `extra_output` adds `p`, the first input as it came."""
    nodes = [helper.make_node("ReduceSum", [inputs[0][0], "axes"], ["y"], keepdims=1)]
    outputs = [helper.make_tensor_value_info("y", inputs[0][1], ["batch", 1])]
    if extra_output:
        nodes.append(helper.make_node("Identity", [inputs[0][0]], ["p"]))
        outputs.append(helper.make_tensor_value_info("p", inputs[0][1], ["batch", inputs[0][2][1]]))
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info(*spec) for spec in inputs],
        outputs,
        [numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    return onnx_models.save_graph(graph, path)


def nan_model(path: Path) -> Path:
    """`y` = x * (0/0): a NaN for every input, as a model with a broken normalisation gives."""
    graph = helper.make_graph(
        [
            helper.make_node("Div", ["zero", "zero"], ["nan"]),
            helper.make_node("Mul", ["x", "nan"], ["y"]),
        ],
        "nan_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.array(0.0, np.float32), "zero")],
    )
    return onnx_models.save_graph(graph, path)


def misdeclared(path: Path) -> Path:
    """Declares `y` [batch, 3] but reshapes `x` [batch, 4] to the shape the input `s` asks for
    (0: keep that axis), which no shape inference can check: with the synthetic zeros it
    answers [1, 4], what the serving image would send clients that trust the metadata."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["y"])],
        "misdeclared",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("s", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    return onnx_models.save_graph(graph, path)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("check-model")
    classifier(root / "v1.onnx")
    classifier(root / "added_output.onnx", extra_output=True)
    classifier(
        root / "two_inputs.onnx",
        inputs=(("x", TensorProto.FLOAT, ["batch", 4]), ("mask", TensorProto.BOOL, ["batch", 4])),
    )
    classifier(root / "renamed.onnx", inputs=(("features", TensorProto.FLOAT, ["batch", 4]),))
    classifier(root / "fp64.onnx", inputs=(("x", TensorProto.DOUBLE, ["batch", 4]),))
    classifier(root / "wider.onnx", inputs=(("x", TensorProto.FLOAT, ["batch", 8]),))
    classifier(root / "any_width.onnx", inputs=(("x", TensorProto.FLOAT, ["batch", "width"]),))
    nan_model(root / "nan.onnx")
    misdeclared(root / "misdeclared.onnx")
    (root / "not_onnx.onnx").write_text("this is a README, not a model\n")
    return root


def check(*args: str | Path) -> tuple[int, dict[str, Any], str]:
    """Run the command with -o json: (exit code, the JSON document, stderr)."""
    done = subprocess.run(
        [*CLI, *map(str, args), "-o", "json"], capture_output=True, text=True, timeout=120
    )
    return done.returncode, json.loads(done.stdout), done.stderr


def result(report: dict[str, Any], name: str) -> str:
    return next(c["result"] for c in report["checks"] if c["name"] == name)


def sample(path: Path, rows: list[list[float]], name: str = "x") -> Path:
    path.write_text(json.dumps({"inputs": [{"name": name, "shape": [len(rows), len(rows[0])],
                                            "datatype": "FP32", "data": rows}]}))  # fmt: skip
    return path


def test_a_compatible_model_passes_and_reports_its_additions(models: Path, tmp_path: Path) -> None:
    req = sample(tmp_path / "req.json", [[1, 2, 3, 4], [0, 0, 0, 1]])
    code, report, _ = check(
        models / "added_output.onnx", "--against-file", models / "v1.onnx",
        "--sample", req, "--latency-budget", "10s", "--runs", "20",
    )  # fmt: skip
    assert code == 0, report
    assert report["result"] == "pass"
    assert [c["result"] for c in report["checks"]] == ["pass"] * 4
    assert report["signature"] == [{
        "kind": "added", "role": "output", "tensor": "p", "before": None, "after": "FP32 [-1,4]",
        "breaking": False,
        "reason": "new output 'p': clients that do not ask for it are not affected",
    }]  # fmt: skip
    assert report["against"]["kind"] == "file"
    assert report["model"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert [s["source"] for s in report["samples"]] == [f"{req}#1"]
    assert {"name": "y", "datatype": "FP32", "shape": [2, 1], "nonFinite": 0} in (
        report["samples"][0]["outputs"]
    )
    latency = report["latency"]
    assert latency["runs"] == 20
    assert 0 < latency["p50Ms"] <= latency["p99Ms"] <= latency["budgetMs"] == 10000


def test_a_fixed_input_dimension_turning_free_is_compatible(models: Path) -> None:
    code, report, _ = check(models / "any_width.onnx", "--against-file", models / "v1.onnx")
    assert code == 0, report
    assert [(f["kind"], f["breaking"]) for f in report["signature"]] == [("shape", False)]


@pytest.mark.parametrize(
    ("candidate", "serving", "kind", "tensor", "named"),
    [
        ("v1", "two_inputs", "removed", "mask", "input mask removed (was BOOL [-1,4])"),
        ("renamed", "v1", "renamed", "x", "input x renamed to features"),
        ("fp64", "v1", "datatype", "x", "input x: FP32 [-1,4] -> FP64 [-1,4]"),
        ("wider", "v1", "shape", "x", "input x: FP32 [-1,4] -> FP32 [-1,8]"),
        ("two_inputs", "v1", "added", "mask", "input mask added (BOOL [-1,4])"),
    ],
)
def test_a_breaking_change_fails_and_is_named(
    models: Path, candidate: str, serving: str, kind: str, tensor: str, named: str
) -> None:
    code, report, _ = check(models / f"{candidate}.onnx", "--against-file",
                            models / f"{serving}.onnx")  # fmt: skip
    assert code == 1, report
    assert report["result"] == "fail"
    assert result(report, "signature") == "fail"
    found = [(f["kind"], f["role"], f["tensor"], f["breaking"]) for f in report["signature"]]
    assert (kind, "input", tensor, True) in found
    detail = next(c["detail"] for c in report["checks"] if c["name"] == "signature")
    assert named in detail


def test_the_table_names_the_breaking_change(models: Path) -> None:
    done = subprocess.run(
        [*CLI, str(models / "renamed.onnx"), "--against-file", str(models / "v1.onnx")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "RESULT", "DETAIL"]
    assert any(line.split()[:2] == ["signature", "FAIL"] for line in lines)
    assert ["renamed", "input", "x", "x", "features", "yes"] in [line.split() for line in lines]
    assert lines[-1] == "check-model: FAIL (signature)"


def test_nan_outputs_fail_on_samples_and_on_synthetic_inputs(models: Path, tmp_path: Path) -> None:
    req = sample(tmp_path / "req.json", [[1, 2, 3, 4]])
    code, report, _ = check(models / "nan.onnx", "--sample", req)
    assert code == 1, report
    assert result(report, "samples") == "fail"
    assert report["samples"][0]["problems"] == ["output y: 4 NaN and 0 Inf of 4 values"]
    assert report["samples"][0]["outputs"][0]["nonFinite"] == 4
    code, report, _ = check(models / "nan.onnx")
    assert code == 1
    assert report["samples"][0]["source"] == "synthetic"
    assert result(report, "samples") == "fail"


def test_an_output_not_of_its_declared_shape_fails(models: Path) -> None:
    code, report, _ = check(models / "misdeclared.onnx")
    assert code == 1, report
    assert report["samples"][0]["problems"] == [
        "output y: shape [1,4] where the model declares [-1,3]"
    ]


def test_a_sample_the_model_refuses_fails_naming_it(models: Path, tmp_path: Path) -> None:
    """A request that served v1 and that the candidate refuses is the gate's business (1)."""
    req = sample(tmp_path / "req.json", [[1, 2, 3, 4]])
    code, report, _ = check(models / "wider.onnx", "--sample", req)
    assert code == 1, report
    [problem] = report["samples"][0]["problems"]
    assert str(req) in problem
    assert "sample 1" in problem


def test_over_the_latency_budget_fails(models: Path) -> None:
    code, report, _ = check(models / "v1.onnx", "--latency-budget", "0.001ms", "--runs", "5")
    assert code == 1, report
    assert result(report, "latency") == "fail"
    assert report["latency"]["p99Ms"] > report["latency"]["budgetMs"] == 0.001
    code, report, _ = check(models / "v1.onnx", "--latency-budget", "30s", "--runs", "5")
    assert code == 0, report


def test_a_file_that_is_not_onnx_is_an_error(models: Path) -> None:
    code, report, stderr = check(models / "not_onnx.onnx", "--against-file", models / "v1.onnx")
    assert code == 2
    assert report["result"] == "error"
    assert report["error"].startswith(f"cannot load model {models / 'not_onnx.onnx'}: ")
    assert "not a valid ONNX model" in report["error"]
    assert stderr.startswith("error: cannot load model")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--latency-budget", "20"], "--latency-budget: '20' must be a duration"),
        (["--runs", "0"], "--runs must be at least 1"),
        (["--against-file", "absent.onnx"], "--against-file absent.onnx: no such file"),
        (["--against", "fraud"], "give md/NAME"),
        (["--sample", "absent.json"], "absent.json: cannot read it"),
    ],
)
def test_bad_arguments_are_errors_that_name_the_flag(
    models: Path, args: list[str], named: str
) -> None:
    code, report, stderr = check(models / "v1.onnx", *args)
    assert code == 2, report
    assert named in report["error"]
    assert named in stderr


def test_a_sample_file_that_is_not_json_is_an_error(models: Path, tmp_path: Path) -> None:
    bad = tmp_path / "req.json"
    bad.write_text("{inputs: oops")
    code, report, _ = check(models / "v1.onnx", "--sample", bad)
    assert code == 2
    assert f"warm-up file {bad} is not valid JSON" in report["error"]


def test_help_states_the_exit_codes() -> None:
    done = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for line in ("0  every check passed", "1  a check failed", "2  error"):
        assert line in done.stdout


def test_the_cli_loads_no_serving_dependency_until_check_model_runs() -> None:
    """`modeldeploy validate` runs where only pydantic and PyYAML are installed."""
    code = (
        "import sys, modeldeploy.cli\n"
        "print(sorted(m for m in ('numpy', 'onnxruntime', 'modelserve', 'kubernetes') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_docstring_examples_hold() -> None:
    import doctest

    from modeldeploy import checkmodel

    assert doctest.testmod(checkmodel).failed == 0


def _fields(value: Any, prefix: str = "") -> set[str]:
    """Every field path in a JSON document, as docs/check-model.md writes them."""
    found = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            found |= {path} | _fields(item, path)
    elif isinstance(value, list):
        for item in value:
            found |= _fields(item, f"{prefix}[]")
    return found


def test_every_json_field_is_documented(models: Path, tmp_path: Path) -> None:
    """docs/check-model.md is the schema scripts rely on: a field it does not name fails here."""
    req = sample(tmp_path / "req.json", [[1, 2, 3, 4]])
    _, report, _ = check(models / "renamed.onnx", "--against-file", models / "v1.onnx",
                         "--sample", req, "--latency-budget", "10s")  # fmt: skip
    docs = (Path(__file__).resolve().parents[2] / "docs" / "check-model.md").read_text()
    rows = docs[docs.index("| field | type | meaning |") :].splitlines()[2:]
    named: set[str] = set()
    for row in rows:
        if not row.startswith("| `"):
            break
        last = ""
        for cell in row.split("|")[1].replace("`", "").split(","):
            path = cell.strip()
            if path.startswith("."):  # `signature[].before`, `.after`
                path = last.rsplit(".", 1)[0] + path
            named.add(path)
            last = path
    # A list of tensors or outputs is documented as a whole, by the list's row.
    wholes = ("model.inputs[]", "model.outputs[]", "samples[].outputs[]", "checks[]")
    # A list is named with [] after it; an object is documented by its fields.
    named |= {path.removesuffix("[]") for path in named}
    named |= {path.rsplit(".", 1)[0] for path in named if "." in path}
    missing = {f for f in _fields(report) if f not in named and not f.startswith(wholes)}
    assert missing == set()
    assert _fields({"result": "error", "error": ""}) <= named | {"error"}
