"""Write the image's sample model, an iris classifier, as ONNX (run at image build time).

The project's examples point at file:///opt/modelserve/models/iris-v1.onnx. Generating it here,
rather than committing a binary, keeps the repository text-only and the model reviewable: it is
a linear layer whose weights encode the classic decision rules for Fisher's iris data (petal
length below 2.45 cm is setosa; otherwise petal width above 1.75 cm is virginica), followed by
a softmax. Input `input`: FP32 [batch, 4] (sepal length, sepal width, petal length, petal width,
in cm). Outputs `label`: INT64 [batch] (0 setosa, 1 versicolor, 2 virginica) and
`probabilities`: FP32 [batch, 3].

Usage: python make_sample_model.py OUTPUT.onnx [v1|v2]   (needs `onnx`, at build time only)
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Scores per class: setosa 10·(2.45 - petal length), versicolor 0, virginica 10·(petal width -
# 1.75). Columns: sepal length, sepal width, petal length, petal width.
WEIGHTS = np.array(
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-10.0, 0.0, 0.0], [0.0, 0.0, 10.0]], dtype=np.float32
)
BIAS = np.array([24.5, 0.0, -17.5], dtype=np.float32)
# Version 2, for demonstrating a rollout: virginica from petal width 1.3 cm instead of 1.75 cm,
# so some versicolor rows change class and a user can see which version answered.
VERSIONS = {"v1": BIAS, "v2": np.array([24.5, 0.0, -13.0], dtype=np.float32)}


def build(version: str = "v1") -> onnx.ModelProto:
    """The iris model as an in-memory ONNX proto (opset 17, IR 8 for wide runtime support)."""
    bias = VERSIONS[version]
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "weights", "bias"], ["scores"]),
            helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0),
        ],
        "iris",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
        ],
        [numpy_helper.from_array(WEIGHTS, "weights"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modelserve"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main(argv: list[str]) -> int:
    """Write the model to the path given (version 1, or the version named second)."""
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] not in VERSIONS):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    onnx.save(build(*argv[2:]), argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
