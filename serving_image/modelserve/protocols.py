"""Inference protocols: which route is a protocol's inference route, how its request body
becomes model inputs, and how the model's outputs become its answer.

The app routes, authenticates, limits and batches the same way for every protocol; all it asks
of one is this interface. A third protocol is one module with a class like `oip_v2.OipV2`, and
one entry in the app's `PROTOCOLS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .codec import InferRequest
from .messages import Request, Response
from .model import Feeds, Model


@dataclass(frozen=True, slots=True)
class InferRoute:
    """The model (and version, when the route names one) an inference request is for."""

    model: str
    version: str | None = None


class InferProtocol(Protocol):
    """One wire protocol for inference requests."""

    @property
    def tag(self) -> str:
        """The `protocol` label of its requests in metrics."""
        ...

    def route(self, path: str) -> InferRoute | None:
        """The model a path addresses, when the path is this protocol's inference route."""
        ...

    def decode(
        self, request: Request, body: bytes, model: Model, *, reject_nonfinite: bool
    ) -> InferRequest:
        """The request's (decompressed) body as validated model inputs; raises ServeError."""
        ...

    def encode(self, model: Model, decoded: InferRequest, results: Feeds) -> Response:
        """The answer to a request, from the model's outputs for its rows."""
        ...
