"""Settings from command-line flags and environment variables, nothing else.

The server knows nothing of Kubernetes: the operator renders flags or `MODELSERVE_*` variables
into the pod spec. Every flag has an environment variable (flag wins), both listed by `--help`.
The environment is a parameter, so tests pass their own instead of mutating `os.environ`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from . import exitcodes
from .accelerators import ACCELERATORS, Accelerator

ENV_PREFIX: Final = "MODELSERVE_"
GRAPH_OPTIMIZATION_LEVELS: Final = ("disable", "basic", "extended", "all")

GraphOptimization = Literal["disable", "basic", "extended", "all"]
LogFormat = Literal["text", "json"]


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to start; immutable once parsed."""

    model: str
    name: str
    version: str = "1"
    sha256: str | None = None
    host: str = "0.0.0.0"
    port: int = 8080
    # Dynamic batching and ONNX Runtime session options.
    max_batch_size: int = 32
    max_delay_ms: float = 0.0
    instances: int = 1
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: GraphOptimization = "all"
    accelerator: Accelerator = "cpu"
    warmup: bool = True
    warmup_file: Path | None = None
    batching: bool = False
    # Protection.
    max_body_bytes: int = 16 * 1024 * 1024
    max_buffered_bytes: int = 256 * 1024 * 1024
    max_connections: int = 1024
    max_concurrency: int = 0
    max_queue: int = 1024
    reject_nonfinite: bool = False
    # Bytes ONNX Runtime may allocate for inferences (0: unbounded; None: auto, memory_budget).
    max_model_memory: int | None = 0
    auth_token: str | None = field(default=None, repr=False)
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = field(default=None, repr=False)
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    # Bearer token that lets a scraper read the payload-derived (drift) metric families.
    metrics_token: str | None = field(default=None, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Connections and shutdown.
    keepalive_timeout: float = 75.0
    request_timeout: float = 60.0
    drain_grace: float = 0.0
    drain_timeout: float = 25.0
    # Fetching the model.
    model_dir: Path = Path("/tmp/modelserve")
    pvc_root: Path = Path("/mnt/models")
    download_timeout: float = 60.0
    download_retries: int = 3
    # Observability.
    log_format: LogFormat = "text"
    log_level: str = "INFO"
    access_log: bool = True
    drift_max_features: int = 64
    drift_metrics: bool = True

    @property
    def auth_enabled(self) -> bool:
        """Whether inference and metadata routes require credentials."""
        return bool(self.auth_token or self.jwt_secret or self.jwt_public_key)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each flag, and the exit-code table kept as laid out."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {value!r}")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return number


def _memory(value: str) -> int | None:
    """`auto` (None: decided from the container's limit) or a number of bytes, 0 for none."""
    if value.strip().lower() == "auto":
        return None
    return _non_negative_int(value)


# Where a container's cgroup (v2, or v1's memory controller) states its memory limit.
CGROUP: Final = Path("/sys/fs/cgroup")
# cgroup v1 writes "no limit" as the largest page-aligned 64-bit number.
_NO_LIMIT: Final = 1 << 62


def memory_budget(root: Path = CGROUP, *, model_bytes: int = 0) -> int:
    """The default (auto) --max-model-memory: three quarters of the container's memory limit,
    leaving the rest to Python, request buffers and the answers, less the model's weights,
    which ONNX Runtime holds outside the bounded arena (at least an eighth of the limit);
    0 (unbounded) when there is no limit.

    Why a default: a small input can make a model allocate gigabytes (attention is quadratic in
    the sequence length); bounded, that request gets a 413, unbounded, the OOM killer ends the
    pod and every request in it."""
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if not text.isdigit() or int(text) >= _NO_LIMIT:
            return 0
        limit = int(text)
        return max(limit * 3 // 4 - model_bytes, limit // 8)
    return 0


def _secret(value: str | None, path: str | None, flag: str) -> str | None:
    """A secret given directly (flag or environment variable) or by a mounted file, stripped of
    the surrounding whitespace both pick up (`echo`, `kubectl create secret --from-file`), so the
    same secret compares equal however it arrives. One that strips to nothing is an error, not
    "no secret": read as unset it would silently turn protection off."""
    if value is None and not path:
        return None
    text = value if value is not None else Path(str(path)).read_text()
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"{flag} is empty (whitespace only)")
    return stripped


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelserve",
        description=(
            "Serve one ONNX model over the KServe Open Inference Protocol v2 (REST, JSON and "
            "binary tensors) and the v1 :predict protocol, with dynamic batching and "
            "Prometheus metrics. Every flag can also be set by the environment variable shown."
        ),
        formatter_class=_HelpFormatter,
        epilog=exitcodes.help_text(),
    )

    def add(flag: str, *, default: Any = None, **kwargs: Any) -> None:
        var = ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()
        help_text = kwargs.pop("help")
        if var in env:
            # argparse runs `type` over string defaults, so a bad variable fails like a bad flag.
            default = env[var]
        parser.add_argument(flag, default=default, help=f"{help_text} [env {var}]", **kwargs)

    add("--model", help="model URI: a path, file://, http(s)://, s3:// or pvc://CLAIM/PATH")
    add("--name", help="model name in the URLs and metrics (default: the file name's stem)")
    add("--version", default="1", help="model version shown in metadata and metrics")
    add("--sha256", help="expected sha256 of the model file; a mismatch never serves")
    add("--host", default="0.0.0.0", help="address to listen on")
    add("--port", default=8080, type=int, help="port to listen on")
    add("--max-batch-size", default=32, type=_positive_int, help="rows per batched inference")
    add(
        "--max-delay-ms",
        default=0.0,
        type=_non_negative_float,
        help="how long a request may wait for a batch to fill; 0 batches whatever arrived "
        "while the model was busy, adding no delay at low load",
    )
    add("--instances", default=1, type=_positive_int, help="inferences run concurrently")
    add("--intra-op-threads", default=1, type=_non_negative_int, help="ORT intra-op threads")
    add("--inter-op-threads", default=1, type=_non_negative_int, help="ORT inter-op threads")
    add(
        "--graph-optimization",
        default="all",
        choices=GRAPH_OPTIMIZATION_LEVELS,
        help="ONNX Runtime graph optimization level",
    )
    add(
        "--accelerator",
        default="cpu",
        choices=ACCELERATORS,
        help="execution providers: cuda (CUDA, then CPU) or tensorrt (TensorRT, CUDA, then CPU) "
        "need the onnxruntime-gpu image and a GPU; when they cannot run, the model is served on "
        "the CPU and says so (metadata parameters.accelerator_fallback, the "
        "modelserve_accelerator_fallback gauge)",
    )
    add(
        "--warmup",
        default=True,
        type=_bool,
        help="answer a warm-up inference before Ready (samples from --warmup-file, else "
        "synthetic inputs; a model no synthetic input runs is served, marked warmup: skipped)",
    )
    add(
        "--warmup-file",
        help="JSON file holding one OIP v2 inference request body, or an array of them: run "
        "before Ready, and used by the --batching check",
    )
    add(
        "--batching",
        default=False,
        type=_bool,
        help="merge concurrent requests' rows into one inference; stays off if a start-up check "
        "finds batched answers differ from one-by-one answers",
    )
    add("--max-body-bytes", default=16 * 1024 * 1024, type=_positive_int, help="413 above")
    add(
        "--max-buffered-bytes",
        default=256 * 1024 * 1024,
        type=_positive_int,
        help="request body bytes held by all connections together (a body counts from its "
        "head, by its Content-Length); a request that would go over gets 503 at its head",
    )
    add(
        "--max-connections",
        default=1024,
        type=_positive_int,
        help="open client connections; one more is answered 503 and closed",
    )
    add(
        "--max-concurrency",
        default=0,
        type=_non_negative_int,
        help="inference requests in flight before 429 (0: no limit)",
    )
    add(
        "--max-queue",
        default=1024,
        type=_non_negative_int,
        help="requests waiting for the model before 503 (0: no limit)",
    )
    add("--reject-nonfinite", default=False, type=_bool, help="400 on NaN/Inf in float inputs")
    add(
        "--max-model-memory",
        default="auto",
        type=_memory,
        help="bytes ONNX Runtime may allocate for the model and its inferences; an inference "
        "that needs more gets 413 (auto: 3/4 of the container's memory limit less the model "
        "file's size, none without a limit; 0: unbounded)",
    )
    add(
        "--auth-token",
        help="static bearer token required on inference and metadata routes; exclusive with "
        "--jwt-secret and --jwt-public-key-file (start-up fails when both kinds are set)",
    )
    add("--auth-token-file", help="file holding the static bearer token")
    add("--jwt-secret", help="HS256 secret: require a valid JWT bearer token")
    add("--jwt-secret-file", help="file holding the HS256 secret")
    add("--jwt-public-key-file", help="PEM public key: require a valid RS256 JWT bearer token")
    add("--jwt-audience", help="required JWT audience (aud)")
    add("--jwt-issuer", help="required JWT issuer (iss)")
    add(
        "--metrics-token",
        help="bearer token that lets a scraper read the payload-derived (drift) families of "
        "/metrics; the inference credentials do too. Without credentials, /metrics serves only "
        "the families that reveal nothing about payloads once any token or JWT key is set",
    )
    add("--metrics-token-file", help="file holding the --metrics-token")
    add("--tls-cert", help="PEM certificate chain: serve HTTPS")
    add("--tls-key", help="PEM private key for --tls-cert")
    add("--keepalive-timeout", default=75.0, type=_non_negative_float, help="idle seconds")
    add(
        "--request-timeout",
        default=60.0,
        type=_non_negative_float,
        help="seconds a client may take to send one request",
    )
    add(
        "--drain-grace",
        default=0.0,
        type=_non_negative_float,
        help="on SIGTERM, seconds to keep accepting while not Ready (endpoint removal lag)",
    )
    add(
        "--drain-timeout",
        default=25.0,
        type=_non_negative_float,
        help="on SIGTERM, seconds to let in-flight requests finish",
    )
    add("--model-dir", default="/tmp/modelserve", help="where downloaded models are kept")
    add("--pvc-root", default="/mnt/models", help="where pvc://CLAIM/PATH claims are mounted")
    add(
        "--download-timeout",
        default=60.0,
        type=_non_negative_float,
        help="seconds per download attempt, from connecting to the last byte",
    )
    add("--download-retries", default=3, type=_non_negative_int, help="retries on failure")
    add("--log-format", default="text", choices=("text", "json"), help="log line format")
    add("--log-level", default="INFO", help="log level")
    add("--access-log", default=True, type=_bool, help="one log line per request")
    add(
        "--drift-max-features",
        default=64,
        type=_non_negative_int,
        help="input features per input tracked by the drift statistics metrics",
    )
    add(
        "--drift-metrics",
        default=True,
        type=_bool,
        help="export per-feature input statistics (sums, squares, means of request values); "
        "turn off when /metrics is reachable by people who must not learn about payloads",
    )
    return parser


def load(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Parse flags over environment variables; exits with a usage message on bad input."""
    environ = os.environ if env is None else env
    parser = _parser(environ)
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("--model (or MODELSERVE_MODEL) is required")
    if args.graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
        parser.error(f"--graph-optimization must be one of {', '.join(GRAPH_OPTIMIZATION_LEVELS)}")
    if args.accelerator not in ACCELERATORS:  # argparse checks choices on flags, not on env
        parser.error(f"--accelerator (MODELSERVE_ACCELERATOR) must be one of "
                     f"{', '.join(ACCELERATORS)}, not {args.accelerator!r}")  # fmt: skip
    if args.log_format not in ("text", "json"):
        parser.error("--log-format must be text or json")
    if args.max_buffered_bytes < args.max_body_bytes:
        parser.error("--max-buffered-bytes must be at least --max-body-bytes")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    try:
        token = _secret(args.auth_token, args.auth_token_file, "--auth-token")
        secret = _secret(args.jwt_secret, args.jwt_secret_file, "--jwt-secret")
        public_key = _secret(None, args.jwt_public_key_file, "--jwt-public-key-file")
        metrics_token = _secret(args.metrics_token, args.metrics_token_file, "--metrics-token")
    except OSError as exc:
        parser.error(f"cannot read a secret file: {exc}")
    except ValueError as exc:
        parser.error(str(exc))
    if secret and public_key:
        parser.error("choose one of --jwt-secret and --jwt-public-key-file")
    if token and (secret or public_key):
        # One credential kind per server: which clients would be refused is otherwise a guess.
        jwt_flag = "--jwt-secret" if secret else "--jwt-public-key-file"
        parser.error(
            f"--auth-token and {jwt_flag} (or their -file and MODELSERVE_ forms) exclude each "
            "other: choose one kind of auth"
        )
    name = args.name or _default_name(args.model)
    if "/" in name or not name:
        parser.error(f"model name {name!r} must be non-empty and contain no '/'")
    return Settings(
        model=args.model,
        name=name,
        version=str(args.version),
        sha256=args.sha256.lower() if args.sha256 else None,
        host=args.host,
        port=args.port,
        max_batch_size=args.max_batch_size,
        max_delay_ms=args.max_delay_ms,
        instances=args.instances,
        intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
        graph_optimization=args.graph_optimization,
        accelerator=args.accelerator,
        warmup=args.warmup,
        warmup_file=Path(args.warmup_file) if args.warmup_file else None,
        batching=args.batching,
        max_body_bytes=args.max_body_bytes,
        max_buffered_bytes=args.max_buffered_bytes,
        max_connections=args.max_connections,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        reject_nonfinite=args.reject_nonfinite,
        max_model_memory=args.max_model_memory,
        auth_token=token,
        jwt_secret=secret,
        jwt_public_key=public_key,
        jwt_audience=args.jwt_audience,
        jwt_issuer=args.jwt_issuer,
        metrics_token=metrics_token,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        keepalive_timeout=args.keepalive_timeout,
        request_timeout=args.request_timeout,
        drain_grace=args.drain_grace,
        drain_timeout=args.drain_timeout,
        model_dir=Path(args.model_dir),
        pvc_root=Path(args.pvc_root),
        download_timeout=args.download_timeout,
        download_retries=args.download_retries,
        log_format=args.log_format,
        log_level=str(args.log_level).upper(),
        access_log=args.access_log,
        drift_max_features=args.drift_max_features if args.drift_metrics else 0,
        drift_metrics=args.drift_metrics,
    )


def _default_name(uri: str) -> str:
    """`https://host/fraud/v7.onnx?sig=...` → `v7`: the file name without query or suffix."""
    tail = uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return tail.removesuffix(".onnx") or "model"
