"""Run KServe's own InferenceRESTClient (v2) against a server; print what it got, as JSON.

Run by test_serve_clients.py with the Python of a virtualenv that has kserve
(`make kserve-client`): kserve pins its own kubernetes client, grpc and pandas, which the
project's environment must not inherit. Usage: python kserve_client.py URL MODEL ROWS_JSON
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import kserve  # type: ignore[import-not-found]
import numpy as np


async def main(url: str, model: str, rows: np.ndarray[Any, Any]) -> dict[str, Any]:
    client = kserve.InferenceRESTClient(kserve.RESTConfig(protocol="v2"))
    answer: dict[str, Any] = {
        "server_ready": await client.is_server_ready(url),
        "model_ready": await client.is_model_ready(url, model),
        "infer": [],
    }
    for binary in (False, True):
        tensor = kserve.InferInput(name="input", shape=list(rows.shape), datatype="FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        request = kserve.InferRequest(model_name=model, infer_inputs=[tensor], request_id="k")
        result = await client.infer(url, request, model_name=model)
        output = result.outputs[0]
        answer["infer"].append(
            {"binary": binary, "id": result.id, "name": output.name,
             "data": output.as_numpy().tolist()}
        )  # fmt: skip
    await client.close()
    return answer


if __name__ == "__main__":
    url, model, rows = sys.argv[1], sys.argv[2], np.array(json.loads(sys.argv[3]), np.float32)
    print(json.dumps(asyncio.run(main(url, model, rows))))
