"""Models built with `onnx.helper` that have the properties of real exported models which the
start-up of a server must cope with: sizes a warm-up at 1 cannot meet, and operators that
combine values along the first dimension, so that merging clients' rows would answer each
client with the others' values.

Each returns the path it wrote. servekit.py holds the row-independent models most tests use.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN = 8  # the recurrent model's state size
FEATURES = 4  # the recurrent model's input size
MATMUL_FEATURES = 5  # the only width the `unrunnable` model accepts: no synthetic size is 5


def save_graph(graph: onnx.GraphProto, path: Path) -> Path:
    """Save a graph built in a test as these models are saved (opset 17, IR 8, checked)."""
    return save_model(graph, path)


def write_models(root: Path, *builders: Callable[[Path], Path]) -> Path:
    """Write each builder's model as ROOT/<builder name>.onnx; the folder a fixture returns."""
    for build in builders:
        build(root / f"{build.__name__}.onnx")
    return root


def save_model(graph: onnx.GraphProto, path: Path) -> Path:
    """Check and write a test model at opset 17, IR 8: what every test builder here ends with."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def reflect_pad(path: Path) -> Path:
    """An audio front end's reflect padding: `x` FP32 [batch, samples] → `y` [batch, samples+2]
    (one sample reflected at each end). Needs samples >= 2: a warm-up at 1 fails."""
    graph = helper.make_graph(
        [helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")],
        "reflect_pad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "samples"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "padded"])],
        [numpy_helper.from_array(np.array([0, 1, 0, 1], np.int64), "pads")],
    )
    return save_model(graph, path)


def strided_concat(path: Path) -> Path:
    """A YOLO-style neck: a stride-2 branch and a stride-32 branch upsampled 16 times, concatenated
    on channels. `x` FP32 [batch, 3, height, width] → `y` [batch, 6, height/2, width/2]; the
    branches only line up when height and width are multiples of 32."""
    graph = helper.make_graph(
        [
            helper.make_node("MaxPool", ["x"], ["fine"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("MaxPool", ["x"], ["coarse"], kernel_shape=[32, 32], strides=[32, 32]),
            helper.make_node("Resize", ["coarse", "", "scales"], ["up"], mode="nearest"),
            helper.make_node("Concat", ["fine", "up"], ["y"], axis=1),
        ],
        "strided_concat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6, "h2", "w2"])],
        [numpy_helper.from_array(np.array([1, 1, 16, 16], np.float32), "scales")],
    )
    return save_model(graph, path)


def recurrent(path: Path, seed: int = 0) -> Path:
    """A sequence-first bidirectional GRU as exporters write it with every axis dynamic:
    `x` FP32 [seq, batch, 4] and the state `h0` [directions, batch, 8], whose batch axis is the
    second; outputs `y` [seq, directions, batch, 8] and `y_h` [directions, batch, 8]. The state
    needs directions = 2, so a warm-up at 1 fails, and the first axis is never the batch."""
    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)

    graph = helper.make_graph(
        [
            helper.make_node(
                "GRU",
                ["x", "W", "R", "B", "", "h0"],
                ["y", "y_h"],
                hidden_size=HIDDEN,
                direction="bidirectional",
            )
        ],
        "recurrent",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", FEATURES]),
            helper.make_tensor_value_info("h0", TensorProto.FLOAT, ["directions", "batch", HIDDEN]),
        ],
        [
            helper.make_tensor_value_info(
                "y", TensorProto.FLOAT, ["seq", "directions", "batch", HIDDEN]
            ),
            helper.make_tensor_value_info(
                "y_h", TensorProto.FLOAT, ["directions", "batch", HIDDEN]
            ),
        ],
        [
            numpy_helper.from_array(weights(2, 3 * HIDDEN, FEATURES), "W"),
            numpy_helper.from_array(weights(2, 3 * HIDDEN, HIDDEN), "R"),
            numpy_helper.from_array(weights(2, 6 * HIDDEN), "B"),
        ],
    )
    return save_model(graph, path)


def unrunnable(path: Path) -> Path:
    """A width the model does not say: `x` FP32 [batch, features] @ W [5, 2] → `y` [batch, 2].
    Only features = 5 runs, and no synthetic size is 5; a warm-up sample can say it."""
    w = np.arange(MATMUL_FEATURES * 2, dtype=np.float32).reshape(MATMUL_FEATURES, 2) / 10
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "unrunnable",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "features"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(w, "w")],
    )
    return save_model(graph, path)


def cumsum_rows(path: Path) -> Path:
    """Combines values along the first axis: `x` FP32 [batch, 4] → `y` = CumSum(x, axis 0).
    Batched with another client's rows, every row after the first is another answer."""
    graph = helper.make_graph(
        [helper.make_node("CumSum", ["x", "axis"], ["y"])],
        "cumsum_rows",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.array(0, np.int64), "axis")],
    )
    return save_model(graph, path)


def softmax_rows(path: Path) -> Path:
    """Normalises across the first axis: `x` FP32 [batch, 4] → `y` = Softmax(x, axis 0)."""
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], axis=0)],
        "softmax_rows",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    return save_model(graph, path)


def token_max(path: Path) -> Path:
    """A text model that pools across the batch: `input_ids` INT64 [batch, seq] → embedding
    [batch, seq, 4] minus its maximum over axis 0. Rows alike give the same answer batched and
    alone (each row is its own maximum), so only distinct token ids show it mixes rows."""
    table = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["embedded"]),
            helper.make_node("ReduceMax", ["embedded"], ["peak"], axes=[0], keepdims=1),
            helper.make_node("Sub", ["embedded", "peak"], ["y"]),
        ],
        "token_max",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])],
        [numpy_helper.from_array(table, "table")],
    )
    return save_model(graph, path)


def zipmap_classifier(path: Path, *, with_label: bool = True) -> Path:
    """A classifier as skl2onnx exports it by default: `X` FP32 [batch, 3] → `label` INT64
    [batch] (the arg-max) and `probabilities`, a ZipMap: a sequence of {class: probability}
    maps, which no OIP tensor can carry. Without the label, that map is the only output."""
    maps = helper.make_sequence_type_proto(
        helper.make_map_type_proto(
            TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
        )
    )
    nodes = [
        helper.make_node("Softmax", ["X"], ["scores"], axis=1),
        helper.make_node("ZipMap", ["scores"], ["probabilities"], domain="ai.onnx.ml",
                         classlabels_int64s=[0, 1, 2]),
    ]  # fmt: skip
    outputs = [helper.make_value_info("probabilities", maps)]
    if with_label:
        nodes.append(helper.make_node("ArgMax", ["X"], ["label"], axis=1, keepdims=0))
        outputs.insert(0, helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]))
    graph = helper.make_graph(
        nodes,
        "zipmap_classifier",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 3])],
        outputs,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def lookup(path: Path) -> Path:
    """An embedding lookup, row-independent: `input_ids` INT64 [batch, seq] → `y` FP32
    [batch, seq, 4]. An id outside the 50-entry table fails in ONNX Runtime's Gather."""
    table = np.random.default_rng(1).standard_normal((50, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["y"])],
        "lookup",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])],
        [numpy_helper.from_array(table, "table")],
    )
    return save_model(graph, path)


def outer_sum(path: Path) -> Path:
    """Memory quadratic in a dynamic size, as attention is in the sequence: `x` FP32
    [batch, n] → the outer product [batch, n, n] summed over its last axis → `y` [batch, n].
    n = 20000 is an 80 kB input that needs 1.6 GB in between."""
    graph = helper.make_graph(
        [
            helper.make_node("Unsqueeze", ["x", "last"], ["column"]),
            helper.make_node("Unsqueeze", ["x", "middle"], ["row"]),
            helper.make_node("Mul", ["column", "row"], ["outer"]),
            helper.make_node("ReduceSum", ["outer", "last"], ["y"], keepdims=0),
        ],
        "outer_sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n"])],
        [
            numpy_helper.from_array(np.array([2], np.int64), "last"),
            numpy_helper.from_array(np.array([1], np.int64), "middle"),
        ],
    )
    return save_model(graph, path)
