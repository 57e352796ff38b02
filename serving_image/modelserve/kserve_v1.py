"""KServe's v1 protocol: `POST /v1/models/{name}:predict` with `{"instances": [...]}`, answered
`{"predictions": [...]}`; the style many users start with."""

from __future__ import annotations

from typing import Final

from .codec import InferRequest, decode_v1, encode_v1
from .messages import Request, Response
from .model import Feeds, Model
from .protocols import InferRoute

PREFIX: Final = "/v1/models/"
SUFFIX: Final = ":predict"


class KServeV1:
    """The v1 :predict route."""

    tag: Final = "v1"

    def route(self, path: str) -> InferRoute | None:
        if not path.startswith(PREFIX) or not path.endswith(SUFFIX):
            return None
        name = path[len(PREFIX) : -len(SUFFIX)]
        return InferRoute(name) if "/" not in name else None

    def decode(
        self,
        request: Request,  # noqa: ARG002 - the protocol's signature; v1 reads no header
        body: bytes,
        model: Model,
        *,
        reject_nonfinite: bool,
    ) -> InferRequest:
        return decode_v1(body, model, reject_nonfinite=reject_nonfinite)

    def encode(
        self,
        model: Model,
        decoded: InferRequest,  # noqa: ARG002 - v1 answers every output, in model order
        results: Feeds,
    ) -> Response:
        return Response(200, encode_v1(model, results))
