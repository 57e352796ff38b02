"""KServe Open Inference Protocol v2 (REST): JSON tensors, or a JSON header followed by binary
tensors (`Inference-Header-Content-Length`), at `/v2/models/{name}[/versions/{v}]/infer`."""

from __future__ import annotations

from typing import Final

from .codec import InferRequest, decode_v2, encode_v2
from .errors import BadRequestError
from .messages import Request, Response
from .model import Feeds, Model
from .protocols import InferRoute

PREFIX: Final = "/v2/models/"


class OipV2:
    """The OIP v2 inference route."""

    tag: Final = "v2"

    def route(self, path: str) -> InferRoute | None:
        if not path.startswith(PREFIX) or not path.endswith("/infer"):
            return None
        parts = path[len(PREFIX) : -len("/infer")].split("/")
        if len(parts) == 1:
            return InferRoute(parts[0])
        if len(parts) == 3 and parts[1] == "versions":
            return InferRoute(parts[0], parts[2])
        return None

    def decode(
        self, request: Request, body: bytes, model: Model, *, reject_nonfinite: bool
    ) -> InferRequest:
        length = request.headers.get(b"inference-header-content-length")
        header_length = None
        if length is not None:
            if not length.strip().isdigit():
                raise BadRequestError("Inference-Header-Content-Length must be an integer")
            header_length = int(length)
        return decode_v2(
            body, model, header_length=header_length, reject_nonfinite=reject_nonfinite
        )

    def encode(self, model: Model, decoded: InferRequest, results: Feeds) -> Response:
        payload, length, content_type = encode_v2(model, decoded, results)
        headers = []
        if length is not None:
            headers.append((b"inference-header-content-length", str(length).encode()))
        return Response(200, payload, content_type, headers)
