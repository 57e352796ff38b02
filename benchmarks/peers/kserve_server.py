"""KServe peer: KServe's Python model server with a custom ONNX Runtime model, logging off."""

from __future__ import annotations

import logging
from typing import Any

import onnxruntime as ort
import peer_args
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class OnnxModel(Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.ready = True

    async def predict(self, payload: InferRequest, *_: Any, **__: Any) -> InferResponse:
        x = payload.inputs[0].as_numpy()
        y = self.session.run(None, {"input": x})[0]
        output = InferOutput(name="output", shape=list(y.shape), datatype="FP32")
        output.set_data_from_numpy(y, binary_data=False)
        return InferResponse(
            model_name=self.name, infer_outputs=[output], response_id=payload.id or ""
        )


def main() -> None:
    args = peer_args.parse()
    logging.disable(logging.CRITICAL)
    model = OnnxModel(args.name, args.model)
    ModelServer(
        http_port=args.port, grpc_port=args.port + 1, workers=1,
        enable_grpc=False, enable_docs_url=False, enable_latency_logging=False,
    ).start([model])  # fmt: skip


if __name__ == "__main__":
    main()
