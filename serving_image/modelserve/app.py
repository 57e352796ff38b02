"""Routes and lifespan: listen, load and warm the model, serve, drain on SIGTERM.

Routes (OIP v2 REST, plus the v1 style many users start with):

    GET  /v2/health/live                       200 once the process listens
    GET  /v2/health/ready                      200 once the model answered its warm-up
    GET  /v2                                   server metadata
    GET  /v2/models/{name}[/versions/{v}]      model metadata            (auth)
    GET  /v2/models/{name}[/versions/{v}]/ready
    GET  /v2/models/{name}[/versions/{v}]/config  Triton-style config    (auth)
    POST /v2/models/{name}[/versions/{v}]/infer   JSON or binary tensors (auth)
    GET  /v1/models/{name}                     {"name", "ready"}
    POST /v1/models/{name}:predict             {"instances": [...]}      (auth)
    GET  /metrics                              Prometheus text format
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import threading
import time
from typing import Any, Final

import orjson

from . import __version__, exitcodes
from .auth import Authenticator, may_read_payloads
from .batching import Batcher
from .codec import InferRequest
from .config import Settings, memory_budget
from .content_encoding import decompress
from .errors import (
    MethodNotAllowedError,
    ModelLoadError,
    NotFoundError,
    ServeError,
    TooManyRequestsError,
    UnavailableError,
)
from .fetch import fetch, redact_uri
from .kserve_v1 import KServeV1
from .logs import AccessLog
from .metrics import CONTENT_TYPE, Metrics
from .model import Feeds, Model, SessionOptions
from .oip_v2 import OipV2
from .protocols import InferProtocol, InferRoute
from .server import (
    Request,
    Respond,
    Response,
    ServerState,
    error_response,
    fit_descriptor_limit,
    internal_error,
    serve,
)
from .tls import TlsConfigError, tls_context
from .warmup import prepare, read_samples

log = logging.getLogger("modelserve")

V2_MODELS: Final = "/v2/models/"
V1_MODELS: Final = "/v1/models/"
LIVE: Final = Response(200, b'{"live":true}')
READY: Final = Response(200, b'{"ready":true}')
NOT_READY: Final = Response(503, b'{"ready":false}', headers=[(b"retry-after", b"1")])
# The inference protocols served: a new one is a module implementing InferProtocol, listed here.
PROTOCOLS: Final[tuple[InferProtocol, ...]] = (OipV2(), KServeV1())
# At a drain, how long idle keep-alive connections may still bring a request before closing.
DRAIN_SETTLE_SECONDS: Final = 0.2
# The `protocol` label of requests refused outside any inference route (404, 405, 408, 431...).
OTHER: Final = "other"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(payload))


class App:
    """The request handler and the state it reads: the model, the batcher, readiness."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics,
        auth: Authenticator | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.auth = auth
        self.access_log = access_log
        self.model: Model | None = None
        self.batcher: Batcher | None = None
        self.ready = False
        self.inflight = 0
        self.state = ServerState(
            self.handle,
            max_body_bytes=settings.max_body_bytes,
            keepalive_timeout=settings.keepalive_timeout,
            request_timeout=settings.request_timeout,
            on_response=self._responded,
            on_head=self.check_head,
            max_connections=settings.max_connections,
            max_buffered_bytes=settings.max_buffered_bytes,
        )
        metrics.track(
            queue_depth=lambda: self.batcher.queue_depth if self.batcher else 0,
            inflight=lambda: self.inflight,
        )
        metrics.set_ready(False)
        self._server_metadata = _json(
            {"name": "modelserve", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    # --- lifecycle --------------------------------------------------------------------------

    def load(self) -> Model:
        """Fetch, verify, load and warm the model (blocking: run it off the event loop)."""
        s = self.settings
        started = time.perf_counter()
        # Read before the download, so a broken warm-up file fails in seconds, not after it.
        samples = read_samples(s.warmup_file) if s.warmup_file is not None else None
        fetched = fetch(
            s.model,
            sha256=s.sha256,
            model_dir=s.model_dir,
            pvc_root=s.pvc_root,
            timeout=s.download_timeout,
            retries=s.download_retries,
        )
        model = Model.load(
            fetched.path,
            name=s.name,
            version=s.version,
            sha256=fetched.sha256,
            options=SessionOptions(
                intra_op_threads=s.intra_op_threads,
                inter_op_threads=s.inter_op_threads,
                graph_optimization=s.graph_optimization,
                accelerator=s.accelerator,
                max_memory=(
                    memory_budget(model_bytes=fetched.path.stat().st_size)
                    if s.max_model_memory is None
                    else s.max_model_memory
                ),
            ),
        )
        prepare(
            model,
            warmup=s.warmup,
            samples=samples,
            batching=s.batching,
            max_batch_size=s.max_batch_size,
            reject_nonfinite=s.reject_nonfinite,
        )
        self.metrics.set_warmup_skipped(model.warmup.state != "ok")
        self.metrics.set_batching(model.batching.state == "on")
        placement = model.placement
        self.metrics.set_placement(provider=placement.provider, requested=placement.requested,
                                   fallback=bool(placement.fallback))  # fmt: skip
        seconds = time.perf_counter() - started
        self.metrics.model_loaded(seconds=seconds, sha256=fetched.sha256, uri=redact_uri(s.model))
        log.info(
            "model %s version %s loaded from %s in %.3fs (sha256 %s, warm-up %s, batching %s, "
            "on %s)",
            s.name,
            s.version,
            redact_uri(s.model),
            seconds,
            fetched.sha256,
            model.warmup.state,
            f"on, up to {s.max_batch_size} rows" if model.batching.state == "on" else "off",
            placement.provider,
        )
        return model

    def attach(self, model: Model) -> None:
        """Start serving `model`: create the batcher and turn Ready."""
        s = self.settings
        self.model = model
        self.batcher = Batcher(
            model,
            self.metrics,
            max_batch_size=s.max_batch_size,
            max_delay_s=s.max_delay_ms / 1000.0,
            max_queue=s.max_queue,
            instances=s.instances,
        )
        self.ready = True
        self.metrics.set_ready(True)

    async def drain(self, server: asyncio.Server) -> bool:
        """SIGTERM: not Ready, optionally keep accepting a while, then finish what was received.

        Returns False when `--drain-timeout` ran out first: the requests still in progress were
        answered 503 (retry elsewhere) and their inferences abandoned.
        """
        s = self.settings
        self.ready = False
        self.metrics.set_ready(False)
        log.info("draining: not ready; %d connection(s) open", len(self.state.connections))
        if s.drain_grace:
            await asyncio.sleep(s.drain_grace)
        server.close()
        self.state.draining = True
        if self.batcher is not None:
            self.batcher.flush()
        # A request a client sent just before the signal may still be on its way through the
        # kernel: closing its "idle" keep-alive connection now would reset it unanswered. What
        # arrives in this moment is served, its answer closing the connection.
        await asyncio.sleep(DRAIN_SETTLE_SECONDS)
        self.state.close_idle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.drain_timeout
        while self.state.busy and loop.time() < deadline:
            await asyncio.sleep(0.01)
        abandoned = self.state.abandon() if self.state.busy else 0
        if abandoned:
            log.warning(
                "drain timed out after %gs: %d request(s) still in progress answered 503",
                s.drain_timeout,
                abandoned,
            )
        for conn in list(self.state.connections):
            conn.close()
        if self.batcher is not None:
            self.batcher.close()
        if self.access_log is not None:
            self.access_log.flush()
        return not abandoned

    # --- routing ----------------------------------------------------------------------------

    def handle(self, request: Request, respond: Respond) -> Response | None:
        """Route one request (called by the HTTP layer; ServeErrors become answers there)."""
        path = request.path
        inference = _infer_route(path)
        if inference is not None:
            protocol, route = inference
            self._check_model(route.model, route.version)
            _allow(request, "POST")
            self._infer(request, protocol, respond)
            return None
        if path.startswith(V2_MODELS):
            return self._v2_model(request, path[len(V2_MODELS) :])
        if path.startswith(V1_MODELS):
            return self._v1_model(request, path[len(V1_MODELS) :])
        if path == "/v2/health/live":
            _allow(request, "GET")
            return LIVE
        if path == "/v2/health/ready":
            _allow(request, "GET")
            return READY if self.ready else NOT_READY
        if path == "/metrics":
            _allow(request, "GET")
            return self._scrape(request)
        if path in {"/v2", "/v2/"}:
            _allow(request, "GET")
            return self._server_metadata
        raise NotFoundError(f"no route for {request.path}")

    def _scrape(self, request: Request) -> Response:
        """/metrics: the drift families carry request values, so they need credentials once any
        secret is configured; the rest stays open for Prometheus and the operator."""
        payload = may_read_payloads(
            request.headers.get(b"authorization"),
            inference=self.auth,
            scrape_token=self.settings.metrics_token,
        )
        return Response(200, self.metrics.exposition(payload=payload), CONTENT_TYPE)

    def _v2_model(self, request: Request, rest: str) -> Response:
        parts = rest.split("/")
        name, version, action = parts[0], None, parts[1:]
        if len(action) >= 2 and action[0] == "versions":
            version, action = action[1], action[2:]
        self._check_model(name, version)
        route = "/".join(action)
        if route == "ready":
            _allow(request, "GET")
            return _json({"name": name, "ready": self.ready}, 200 if self.ready else 503)
        if route == "":
            _allow(request, "GET")
            self._authenticate(request)
            return _json(self._loaded().metadata())
        if route == "config":
            _allow(request, "GET")
            self._authenticate(request)
            return _json(self._config())
        raise NotFoundError(f"no route for {request.path}")

    def _v1_model(self, request: Request, rest: str) -> Response:
        self._check_model(rest, None)
        _allow(request, "GET")
        return _json({"name": rest, "ready": self.ready}, 200 if self.ready else 503)

    def _check_model(self, name: str, version: str | None) -> None:
        s = self.settings
        if name != s.name:
            raise NotFoundError(
                f"model '{name}' is not served here (this server serves '{s.name}')"
            )
        if version is not None and version != s.version:
            raise NotFoundError(
                f"model '{name}' has no version '{version}' (served: '{s.version}')"
            )

    def _loaded(self) -> Model:
        if self.model is None:
            raise UnavailableError("the model is still loading", retry_after=1)
        return self.model

    def check_head(self, request: Request) -> None:
        """Called with each request's head, before its body is read: label an inference
        request with its protocol, and check credentials on a guarded route, so an
        unauthenticated client is answered 401 without a byte of its body buffered (and never
        gets a `100 Continue`)."""
        tag, guarded = _head_route(request.path)
        request.tag = tag
        if guarded and self.auth is not None:
            self._authenticate(request)

    def _authenticate(self, request: Request) -> None:
        if self.auth is not None and not request.authenticated:
            self.auth.check(request.headers.get(b"authorization"))
            request.authenticated = True

    # --- inference --------------------------------------------------------------------------

    def _infer(self, request: Request, protocol: InferProtocol, respond: Respond) -> None:
        self._authenticate(request)
        model = self._loaded()
        batcher = self.batcher
        assert batcher is not None
        limit = self.settings.max_concurrency
        if limit and self.inflight >= limit:
            raise TooManyRequestsError(
                f"more than {limit} inference requests in flight, retry shortly", retry_after=1
            )
        encoding = request.headers.get(b"content-encoding")
        body = request.body if encoding is None else decompress(
            request.body, encoding, limit=self.settings.max_body_bytes
        )  # fmt: skip
        decoded: InferRequest = protocol.decode(
            request, body, model, reject_nonfinite=self.settings.reject_nonfinite
        )

        def done(results: Feeds | BaseException) -> None:
            self.inflight -= 1
            try:
                if isinstance(results, BaseException):
                    raise results
                response = protocol.encode(model, decoded, results)
            except ServeError as exc:
                response = error_response(exc)
            except Exception:
                log.exception("answering %s failed", request.path)
                response = internal_error()
            respond(response)

        batcher.submit(decoded.feeds, decoded.rows, decoded.outputs, done)
        self.inflight += 1

    def _config(self) -> dict[str, Any]:
        """Triton's model config shape, enough for tritonclient's get_model_config."""
        model = self._loaded()
        s = self.settings
        batches = self.batcher.batches if self.batcher else False

        def dims(shape: tuple[int, ...]) -> list[int]:
            return list(shape[1:] if batches else shape)

        return {
            "name": model.name,
            "platform": "onnxruntime_onnx",
            "backend": "onnxruntime",
            "max_batch_size": s.max_batch_size if batches else 0,
            "input": [
                {"name": t.name, "data_type": "TYPE_" + t.datatype.replace("BYTES", "STRING"),
                 "dims": [-1] if t.any_rank else dims(t.shape)} for t in model.inputs
            ],
            "output": [
                {"name": t.name, "data_type": "TYPE_" + t.datatype.replace("BYTES", "STRING"),
                 "dims": [-1] if t.any_rank else dims(t.shape)} for t in model.outputs
            ],
            "dynamic_batching": {"max_queue_delay_microseconds": int(s.max_delay_ms * 1000)},
            "parameters": {k: {"string_value": v} for k, v in model.parameters().items()},
        }  # fmt: skip

    def _responded(self, request: Request, response: Response, seconds: float) -> None:
        """Count and log each answer as the client received it (499: it had hung up).

        `requests_total` counts every inference request, and every refusal anywhere (404,
        405, and the HTTP layer's 400/408/413/431/503), under `protocol="other"` when no
        inference route was named; a request refused before it was read in full is counted
        but not timed. Health, metadata and scrape answers are not counted."""
        tag = request.tag
        if tag is None and (request.early or response.status in _ROUTING_MISSES):
            tag = OTHER
        if tag is not None:
            if request.early:
                self.metrics.count_request(tag, response.status)
            else:
                self.metrics.observe_request(tag, response.status, seconds)
        if self.access_log is not None:
            self.access_log.record(request, response, seconds)


_ROUTING_MISSES: Final = frozenset({404, 405})


@functools.lru_cache(maxsize=256)
def _infer_route(path: str) -> tuple[InferProtocol, InferRoute] | None:
    """The protocol whose inference route `path` is, and the model it names. Looked up for
    each request's head and again to route it, for a handful of distinct paths: cached (a
    bounded cache, so a client sending endless distinct paths only evicts)."""
    for protocol in PROTOCOLS:
        route = protocol.route(path)
        if route is not None:
            return protocol, route
    return None


@functools.lru_cache(maxsize=256)
def _head_route(path: str) -> tuple[str | None, bool]:
    """What a request's head needs to know of its path, in one cached lookup (it runs for
    every request): its inference protocol's tag, if any, and whether it needs credentials."""
    inference = _infer_route(path)
    return (inference[0].tag if inference is not None else None), _guarded(path)


def _guarded(path: str) -> bool:
    """Routes that need credentials when auth is on: inference, model metadata and config
    (a model's readiness, health, server metadata and /metrics stay open)."""
    if path.startswith(V2_MODELS):
        return not path.endswith("/ready")
    return path.startswith(V1_MODELS) and path.endswith(":predict")


def _allow(request: Request, method: str) -> None:
    if request.method != method:
        raise MethodNotAllowedError(
            f"{request.method} is not allowed on {request.path}; use {method}", allow=method
        )


async def run(app: App) -> int:
    """Serve until SIGTERM/SIGINT, then drain; returns the process exit code."""
    s = app.settings
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ssl_context = None
    if s.tls_cert is not None and s.tls_key is not None:
        try:
            ssl_context = tls_context(str(s.tls_cert), str(s.tls_key))
        except TlsConfigError as exc:
            log.error("%s", exc)
            return exitcodes.CONFIG
    app.state.max_connections = fit_descriptor_limit(s.max_connections)
    try:
        server = await serve(app.state, host=s.host, port=s.port, ssl_context=ssl_context)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", s.host, s.port, exc)
        return exitcodes.MODEL_FAILED
    log.info("listening on %s://%s:%d", "https" if ssl_context else "http", s.host, s.port)
    flusher = None
    if app.access_log is not None:
        flusher = asyncio.ensure_future(_flush_every_second(app.access_log))

    loaded: asyncio.Future[Model] = loop.create_future()

    def load_in_thread() -> None:
        try:
            model = app.load()
        except BaseException as exc:  # delivered to the loop, which decides
            loop.call_soon_threadsafe(_settle_exception, loaded, exc)
        else:
            loop.call_soon_threadsafe(_settle_result, loaded, model)

    # A daemon thread: a SIGTERM during a long download must not wait for it to finish.
    threading.Thread(target=load_in_thread, name="load-model", daemon=True).start()
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    await asyncio.wait([loaded, stopping], return_when=asyncio.FIRST_COMPLETED)
    if loaded.done():
        failure = loaded.exception()
        if failure is not None:
            if isinstance(failure, ModelLoadError):
                log.error("cannot serve the model: %s", failure)
            else:
                log.error("cannot serve the model: %r", failure, exc_info=failure)
            server.close()
            stopping.cancel()
            return exitcodes.MODEL_FAILED
        app.attach(loaded.result())
        log.info("ready: %s/%s", V2_MODELS.rstrip("/"), s.name)
        await stopping
    drained = await app.drain(server)
    if flusher is not None:
        flusher.cancel()
    log.info("stopped")
    return exitcodes.OK if drained else exitcodes.DRAIN_TIMEOUT


def _settle_result(future: asyncio.Future[Model], model: Model) -> None:
    if not future.done():
        future.set_result(model)


def _settle_exception(future: asyncio.Future[Model], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


async def _flush_every_second(access_log: AccessLog) -> None:
    while True:
        await asyncio.sleep(1.0)
        access_log.flush()


__all__ = ["App", "ServeError", "run"]
