"""Domain errors, each carrying the HTTP status it maps to, decided once here.

Every layer (codec, auth, batching, app) raises one of these; the HTTP layer turns it into a
response in one place. That is how a client's mistake always becomes a 4xx that says what was
wrong, and never a 500 or a dropped connection.
"""

from __future__ import annotations


class ServeError(Exception):
    """An error answered to the client: an HTTP status, a message and optional headers."""

    status: int = 500

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Extra response headers; Retry-After tells a well-behaved client when to come back."""
        if self.retry_after is None:
            return []
        return [(b"retry-after", str(self.retry_after).encode())]


class BadRequestError(ServeError):
    """The request is malformed or does not fit the model (400)."""

    status = 400


class UnauthorizedError(ServeError):
    """Missing or invalid credentials (401); says which scheme to use."""

    status = 401

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"www-authenticate", b'Bearer realm="modelserve"')]


class NotFoundError(ServeError):
    """Unknown route, model or model version (404)."""

    status = 404


class MethodNotAllowedError(ServeError):
    """The route exists but not for this method (405); lists the allowed ones."""

    status = 405

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"allow", self.allow.encode())]


class PayloadTooLargeError(ServeError):
    """The body is larger than the configured limit (413)."""

    status = 413


class TooMuchMemoryError(PayloadTooLargeError):
    """An inference needed more than --max-model-memory (a small input with large dynamic
    sizes): too large for this server, as a body over the limit is."""


class HeadersTooLargeError(ServeError):
    """The request line and headers exceed the server's limit (431)."""

    status = 431


class UnsupportedMediaTypeError(ServeError):
    """A Content-Encoding the server cannot decode (415)."""

    status = 415


class TooManyRequestsError(ServeError):
    """More requests in flight than the concurrency limit allows (429, with Retry-After)."""

    status = 429


class InferenceFailedError(ServeError):
    """ONNX Runtime failed on input that passed validation: the model's fault, not the client's."""

    status = 500


class UnavailableError(ServeError):
    """Not ready, draining, or the queue is full (503, with Retry-After)."""

    status = 503


class ModelLoadError(Exception):
    """The model cannot be served (fetch failed, sha256 mismatch, not a valid ONNX model).

    Raised at start-up only; `__main__` prints it and exits non-zero, so the pod never turns Ready
    and the rollout sees a failing revision instead of a server answering with the wrong model.
    """
