"""PyTriton peer: Triton Inference Server with a Python callable and its dynamic batcher.

Needs numpy<2 and LD_LIBRARY_PATH including the running Python's LIBDIR (set by
benchmarks/serving.py).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import peer_args
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def main() -> None:
    args = peer_args.parse()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    features = session.get_inputs()[0].shape[1]
    classes = session.get_outputs()[0].shape[1]

    @batch
    def infer(input: np.ndarray) -> dict[str, np.ndarray]:
        return {"output": session.run(None, {"input": input})[0]}

    config = TritonConfig(http_port=args.port, grpc_port=args.port + 1,
                          metrics_port=args.port + 2, log_verbose=0)  # fmt: skip
    with Triton(config=config) as triton:
        triton.bind(
            model_name=args.name,
            infer_func=infer,
            inputs=[Tensor(name="input", dtype=np.float32, shape=(features,))],
            outputs=[Tensor(name="output", dtype=np.float32, shape=(classes,))],
            config=ModelConfig(max_batch_size=32, batcher=DynamicBatcher()),
            strict=False,
        )
        triton.serve()


if __name__ == "__main__":
    main()
