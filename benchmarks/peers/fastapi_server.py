"""The tutorial approach: FastAPI + pydantic + uvicorn, ONNX Runtime called in the handler.

A peer for benchmarks/serving.py, written the way most guides show it: a pydantic request
model, a plain `def` endpoint (FastAPI runs it in its thread pool), no batching.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import peer_args
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferRequest(BaseModel):
    inputs: list[Tensor]


def build(model: str) -> FastAPI:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    app = FastAPI()

    @app.get("/v2/health/ready")
    @app.get("/v2/models/{model_name}/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v2/models/{model_name}/infer")
    def infer(model_name: str, request: InferRequest) -> dict[str, Any]:
        tensor = request.inputs[0]
        x = np.array(tensor.data, dtype=np.float32).reshape(tensor.shape)
        y = session.run(None, {input_name: x})[0]
        return {
            "model_name": model_name,
            "outputs": [
                {"name": "output", "shape": list(y.shape), "datatype": "FP32",
                 "data": y.reshape(-1).tolist()}
            ],
        }  # fmt: skip

    del ready, infer
    return app


def main() -> None:
    args = peer_args.parse()
    app = build(args.model)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
