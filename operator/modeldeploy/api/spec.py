"""The desired state a user writes: `ModelDeployment.spec`.

Field names follow what users already know: Argo Rollouts' `setWeight`/`pause` steps, Flagger's
`interval`/`iterations`/`threshold`-style analysis, KServe's storage URIs. Every field's
docstring becomes its description in the CRD and in docs/api.md.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any, Final, Literal, Self

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from modeldeploy.api.base import ApiModel, CelRule, opaque_schema
from modeldeploy.api.durations import (
    DURATION_PATTERN,
    MAX_DURATION_HINT,
    DurationString,
    cel_in_range,
)
from modeldeploy.api.hooks import Hooks
from modeldeploy.api.notifications import NotifierList
from modeldeploy.api.types import (
    DnsLabel,
    Duration,
    ObjectName,
    Percent,
    PositiveDuration,
    Quantity,
)

URI_SCHEMES: Final = ("http://", "https://", "s3://", "pvc://", "file:///")
BUILTIN_METRICS: Final = ("error-rate", "latency-p50", "latency-p95", "latency-p99", "request-rate")
OPERATOR_ENV: Final = (
    "MODELSERVE_MODEL", "MODELSERVE_NAME", "MODELSERVE_VERSION", "MODELSERVE_SHA256",
    "MODELSERVE_PORT", "MODELSERVE_MODEL_DIR", "MODELSERVE_LOG_FORMAT", "MODELSERVE_WARMUP_FILE",
    "MODELSERVE_BATCHING", "MODELSERVE_MAX_BATCH_SIZE", "MODELSERVE_MAX_DELAY_MS",
    "MODELSERVE_INTRA_OP_THREADS", "MODELSERVE_INTER_OP_THREADS", "MODELSERVE_JWT_SECRET_FILE",
    "MODELSERVE_JWT_PUBLIC_KEY_FILE", "MODELSERVE_JWT_AUDIENCE", "MODELSERVE_JWT_ISSUER",
    "MODELSERVE_AUTH_TOKEN_FILE", "MODELSERVE_TLS_CERT", "MODELSERVE_TLS_KEY",
)  # fmt: skip
"""Every variable the Deployment builder (core/desired/deployment.py) may set from the spec.
A user variable of the same name would be a second entry in the container's env list, which
server-side apply refuses; so these names, and only these, are refused in spec.serving.env (a
MODELSERVE_ flag the operator does not set, such as MODELSERVE_MAX_QUEUE, stays the user's).
The builder writes no other name: a unit test builds every option and compares."""


def _cel_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{i}'" for i in items) + "]"


# --- model -----------------------------------------------------------------------------------


class ModelSource(ApiModel):
    """Which model file to serve and how to recognise it."""

    uri: Annotated[str, Field(min_length=1, max_length=2048)]
    """Where the serving image fetches the ONNX file: http(s)://HOST/PATH, s3://BUCKET/KEY,
    pvc://CLAIM/PATH (a PersistentVolumeClaim in the same namespace) or file:///PATH (baked into
    the image)."""

    sha256: Annotated[str | None, Field(pattern=r"^[a-f0-9]{64}$")] = None
    """Expected SHA-256 of the file, 64 lowercase hex digits. A mismatch is never served."""

    version: Annotated[
        str | None, Field(max_length=63, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")
    ] = None
    """Version label shown in status, events, metrics and `kubectl get md`."""

    name: DnsLabel | None = None
    """Name clients use in /v2/models/NAME; defaults to the ModelDeployment's name."""

    cel_rules = (
        CelRule(
            rule=" || ".join(f"self.uri.startsWith('{s}')" for s in URI_SCHEMES),
            message="uri must start with http://, https://, s3://, pvc:// or file:///",
            field_path=".uri",
        ),
    )

    @model_validator(mode="after")
    def _check_scheme(self) -> Self:
        if not self.uri.startswith(URI_SCHEMES):
            raise ValueError(self.cel_rules[0].message)
        return self


# --- serving ---------------------------------------------------------------------------------


def _extended(resource: str) -> bool:
    """A resource outside Kubernetes' own domain (nvidia.com/gpu), which is never overcommitted.

    >>> _extended("nvidia.com/gpu"), _extended("cpu"), _extended("example.kubernetes.io/x")
    (True, False, False)
    """
    domain, slash, _ = resource.partition("/")
    return bool(slash) and domain != "kubernetes.io" and not domain.endswith(".kubernetes.io")


class ResourceRequirements(ApiModel):
    """CPU and memory for each serving container, as in a Pod spec."""

    requests: Annotated[dict[str, Quantity] | None, Field(max_length=16)] = None
    """Minimum resources the scheduler reserves, e.g. {cpu: 500m, memory: 512Mi}."""
    limits: Annotated[dict[str, Quantity] | None, Field(max_length=16)] = None
    """Maximum resources the container may use."""

    cel_rules = (
        CelRule(
            rule="!has(self.requests) || self.requests.all(r, !r.contains('/') || "
            "r.split('/')[0] == 'kubernetes.io' || r.split('/')[0].endsWith('.kubernetes.io') || "
            "(has(self.limits) && r in self.limits))",
            message="extended resources such as nvidia.com/gpu need a limit: Kubernetes never "
            "overcommits them, so set resources.limits to the amount requested",
            field_path=".limits",
        ),
    )

    @model_validator(mode="after")
    def _check_extended(self) -> Self:
        limits = self.limits or {}
        if any(_extended(r) and r not in limits for r in self.requests or {}):
            raise ValueError(self.cel_rules[0].message)
        return self


class Batching(ApiModel):
    """Dynamic batching, asked for: concurrent requests are merged into one inference call.

    Opt-in, as Triton's max_batch_size is: a model may combine values along its first axis
    (CumSum, Softmax over axis 0, sequence-first exports), and merging clients' rows would then
    answer each client with others' data. So the server also checks at start that distinct rows
    give the same answers batched as one by one, and keeps batching off (with a warning and the
    gauge modelserve_batching_enabled 0) when they differ.
    """

    max_batch_size: Annotated[int, Field(ge=1, le=1024)] = 32
    """Most rows in one inference call (1 turns batching off)."""
    max_delay_ms: Annotated[int, Field(ge=0, le=1000)] = 2
    """Longest a request waits for others to join its batch, in milliseconds (0: batch only
    what queued while the model was busy, adding no delay)."""


def _inference_request(body: dict[str, Any]) -> dict[str, Any]:
    """Offline twin of the schema below: an OIP v2 request names at least one input tensor."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not 1 <= len(inputs) <= 64:
        raise ValueError("a warm-up sample needs `inputs`: a list of 1 to 64 input tensors")
    if not all(isinstance(tensor, dict) for tensor in inputs):
        raise ValueError("each of a warm-up sample's `inputs` is an object {name, shape, ...}")
    return body


InferenceRequestBody = Annotated[
    dict[str, Any],
    AfterValidator(_inference_request),
    WithJsonSchema(
        {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "inputs": {
                    "description": "Input tensors: {name, shape, datatype, data}, as in an "
                    "Open Inference Protocol v2 request.",
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 64,
                    "items": opaque_schema("object"),
                }
            },
            "x-kubernetes-preserve-unknown-fields": True,
        }
    ),
]


class Warmup(ApiModel):
    """Warm-up samples: Open Inference Protocol v2 request bodies run before a pod is Ready.

    Without samples the server warms up on synthetic inputs, trying a few sizes for symbolic
    dimensions, and still becomes Ready when none runs (it reports `warmup: skipped`). Samples
    make the warm-up real for models that need real sizes (audio pads, detectors, recurrent
    state), and they feed the start-up check of batching.
    """

    samples: Annotated[list[InferenceRequestBody] | None, Field(max_length=8)] = None
    """Request bodies written here, as posted to /v2/models/NAME/infer (JSON tensors). Kept
    small: they travel in a pod annotation (at most 256 KiB together with the others)."""
    config_map_key_ref: KeySelector | None = None
    """A ConfigMap key holding one request body or a JSON array of them, for larger samples."""

    cel_rules = (
        CelRule(
            rule="has(self.samples) != has(self.configMapKeyRef)",
            message="warmup needs exactly one of samples or configMapKeyRef",
        ),
    )

    @model_validator(mode="after")
    def _check_one(self) -> Self:
        if (self.samples is None) == (self.config_map_key_ref is None):
            raise ValueError(self.cel_rules[0].message)
        return self


class Threads(ApiModel):
    """ONNX Runtime thread pools (0 lets ONNX Runtime choose from the CPU limit)."""

    intra_op: Annotated[int, Field(ge=0, le=256)] = 0
    """Threads used inside one operator."""
    inter_op: Annotated[int, Field(ge=0, le=256)] = 0
    """Threads used to run independent operators in parallel."""


class KeySelector(ApiModel):
    """A key of a Secret or ConfigMap in the ModelDeployment's namespace."""

    name: ObjectName
    """Name of the Secret or ConfigMap."""
    key: Annotated[str, Field(min_length=1, max_length=253)]
    """Key inside it."""
    optional: bool | None = None
    """Start the pod even when the key is missing."""


class FieldSelector(ApiModel):
    """A field of the pod itself (downward API)."""

    field_path: Annotated[str, Field(min_length=1, max_length=256)]
    """For example metadata.name or status.podIP."""


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from; exactly one source."""

    secret_key_ref: KeySelector | None = None
    """A key of a Secret."""
    config_map_key_ref: KeySelector | None = None
    """A key of a ConfigMap."""
    field_ref: FieldSelector | None = None
    """A field of the pod."""

    cel_rules = (
        CelRule(
            rule="[has(self.secretKeyRef), has(self.configMapKeyRef), has(self.fieldRef)]"
            ".filter(x, x).size() == 1",
            message="valueFrom needs exactly one of secretKeyRef, configMapKeyRef or fieldRef",
        ),
    )

    @model_validator(mode="after")
    def _check_one(self) -> Self:
        chosen = [self.secret_key_ref, self.config_map_key_ref, self.field_ref]
        if sum(x is not None for x in chosen) != 1:
            raise ValueError(self.cel_rules[0].message)
        return self


class EnvVar(ApiModel):
    """An environment variable for the serving container."""

    name: Annotated[
        str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    ]
    """Variable name."""
    value: Annotated[str | None, Field(max_length=32768)] = None
    """Literal value."""
    value_from: EnvVarSource | None = None
    """Take the value from a Secret, ConfigMap or pod field instead."""

    cel_rules = (
        CelRule(
            rule="!(has(self.value) && has(self.valueFrom))",
            message="set value or valueFrom, not both",
        ),
        CelRule(
            rule=f"!(self.name in {_cel_list(OPERATOR_ENV)})",
            message="this name is set by the operator from the spec (spec.serving.batching, "
            "threads, warmup, auth, tls or spec.model): set that field instead",
            field_path=".name",
        ),
    )

    @model_validator(mode="after")
    def _check_value(self) -> Self:
        if self.value is not None and self.value_from is not None:
            raise ValueError(self.cel_rules[0].message)
        if self.name in OPERATOR_ENV:
            raise ValueError(self.cel_rules[1].message)
        return self


class Toleration(ApiModel):
    """Lets serving pods run on nodes with a matching taint (for example GPU nodes)."""

    key: Annotated[str | None, Field(max_length=316)] = None
    """Taint key; empty with operator Exists matches every taint."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal (the default)."""
    value: Annotated[str | None, Field(max_length=63)] = None
    """Taint value to match with operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = None
    """How long a NoExecute taint is tolerated before eviction."""


class AuthType(StrEnum):
    BEARER_TOKEN = "BearerToken"
    JWT = "JWT"


class SecretKeyRef(ApiModel):
    """A key of a Secret in the ModelDeployment's namespace."""

    name: ObjectName
    """Secret name."""
    key: Annotated[str, Field(min_length=1, max_length=253)] = "token"
    """Key inside the Secret."""


class Auth(ApiModel):
    """Require credentials on inference requests (health and metrics stay open to the kubelet)."""

    type: AuthType = AuthType.BEARER_TOKEN
    """BearerToken: a static token compared in constant time. JWT: signed tokens, checked for
    signature, expiry and audience."""
    secret_ref: SecretKeyRef
    """The token (BearerToken), or the HS256 secret or RS256 public key in PEM (JWT)."""
    algorithm: Literal["HS256", "RS256"] = "RS256"
    """JWT signature algorithm."""
    audience: Annotated[str | None, Field(max_length=253)] = None
    """JWT audience that must be present in the token's aud claim."""
    issuer: Annotated[str | None, Field(max_length=253)] = None
    """JWT issuer that must match the token's iss claim."""


class Tls(ApiModel):
    """Serve HTTPS with a certificate from a Secret of type kubernetes.io/tls."""

    secret_name: ObjectName
    """Secret holding tls.crt and tls.key."""


TopologySpread = Annotated[
    list[dict[str, Any]],
    WithJsonSchema({"type": "array", "maxItems": 8, "items": opaque_schema("object")}),
]


class Serving(ApiModel):
    """How the serving pods run: image, size, batching, threads, placement and protection."""

    image: Annotated[str | None, Field(max_length=512)] = None
    """Serving image; defaults to the image the operator was installed with."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """When the kubelet pulls the image."""
    replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    """Serving pods of the stable revision when autoscaling is not set."""
    resources: ResourceRequirements | None = None
    """CPU and memory requests and limits of the serving container."""
    batching: Batching | None = None
    """Ask for dynamic batching, with these limits; the server checks at start that the model
    answers batched rows as it answers them one by one. Not set: no batching (each request runs
    alone), the safe default for models that combine rows."""
    warmup: Warmup | None = None
    """Warm-up samples run before a pod is Ready. Not set: synthetic inputs."""
    threads: Threads | None = None
    """ONNX Runtime thread pools."""
    env: Annotated[
        list[EnvVar] | None,
        Field(
            max_length=64,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ] = None
    """Extra environment variables of the serving container, each name at most once."""
    node_selector: Annotated[dict[str, str] | None, Field(max_length=32)] = None
    """Run only on nodes with these labels."""
    tolerations: Annotated[list[Toleration] | None, Field(max_length=32)] = None
    """Taints the serving pods tolerate."""
    affinity: Annotated[dict[str, Any] | None, WithJsonSchema(opaque_schema("object"))] = None
    """Pod affinity rules, as in a Pod spec (passed through unchanged)."""
    topology_spread_constraints: TopologySpread | None = None
    """Spread pods over zones or nodes, as in a Pod spec (passed through unchanged)."""
    priority_class_name: ObjectName | None = None
    """PriorityClass of the serving pods."""
    service_account_name: ObjectName | None = None
    """ServiceAccount of the serving pods (for example one allowed to read an s3:// bucket)."""
    auth: Auth | None = None
    """Require a bearer token or JWT on inference requests."""
    tls: Tls | None = None
    """Serve HTTPS instead of HTTP."""

    cel_rules = (
        CelRule(
            rule="!has(self.env) || self.env.all(e, self.env.filter(f, f.name == e.name)"
            ".size() == 1)",
            message="each environment variable name at most once: the container gets one "
            "value per name",
            field_path=".env",
        ),
    )

    @model_validator(mode="after")
    def _check_env(self) -> Self:
        names = [e.name for e in self.env or []]
        if len(set(names)) != len(names):
            raise ValueError(self.cel_rules[0].message)
        return self


# --- autoscaling -----------------------------------------------------------------------------


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler for the stable revision; the canary follows the traffic weight."""

    min_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """Fewest serving pods."""
    max_replicas: Annotated[int, Field(ge=1, le=1000)]
    """Most serving pods."""
    target_cpu_utilization: Annotated[int, Field(ge=1, le=100, alias="targetCPUUtilization")] = 70
    """Average CPU use, in percent of the request, that the autoscaler aims for."""

    cel_rules = (
        CelRule(
            rule="self.maxReplicas >= self.minReplicas",
            message="maxReplicas must be greater than or equal to minReplicas: "
            "raise maxReplicas or lower minReplicas",
            field_path=".maxReplicas",
        ),
    )

    @model_validator(mode="after")
    def _check_range(self) -> Self:
        if self.max_replicas < self.min_replicas:
            raise ValueError(self.cel_rules[0].message)
        return self


# --- rollout ---------------------------------------------------------------------------------


class Strategy(StrEnum):
    CANARY = "Canary"
    AB_TEST = "ABTest"
    BLUE_GREEN = "BlueGreen"
    IMMEDIATE = "Immediate"


class Judge(StrEnum):
    THRESHOLD = "threshold"
    STATISTICAL = "statistical"


INDEFINITE: Final = "indefinite"
"""A pause that holds until `modeldeploy promote`."""


def _duration_or_word(pause: str | None) -> str | None:
    """A pause that reads as a duration becomes a DurationString; any other text is left for
    Step's own check, which refuses it with the CRD rule's message and field."""
    if pause is None or pause == INDEFINITE:
        return pause
    try:
        return DurationString(pause)
    except ValueError:
        return pause


class Step(ApiModel):
    """One canary step: send this share of traffic to the new revision, then wait."""

    set_weight: Percent
    """Percent of traffic the new revision gets in this step (0 to 100)."""
    pause: Annotated[str | None, Field(max_length=32), AfterValidator(_duration_or_word)] = None
    """How long to hold this weight while analysis runs (a duration such as 60s or 2m), or
    `indefinite` to hold until `modeldeploy promote`. Not set: move on after one analysis
    interval."""

    cel_rules = (
        CelRule(
            rule="!has(self.pause) || self.pause == 'indefinite' || "
            f"self.pause.matches(r'{DURATION_PATTERN}')",
            message="pause must be a duration such as 60s or 2m, or 'indefinite'",
            field_path=".pause",
        ),
        CelRule(
            rule=f"!has(self.pause) || !self.pause.matches(r'{DURATION_PATTERN}') || "
            + cel_in_range("self.pause"),
            message=f"pause {MAX_DURATION_HINT}",
            field_path=".pause",
        ),
    )

    @model_validator(mode="after")
    def _check_pause(self) -> Self:
        if self.pause not in (None, INDEFINITE) and not isinstance(self.pause, DurationString):
            if re.fullmatch(DURATION_PATTERN, self.pause):  # the right form, too long
                raise ValueError(self.cel_rules[1].message)
            raise ValueError(self.cel_rules[0].message)
        return self

    @property
    def hold(self) -> timedelta | None:
        """How long the step holds, when its pause is a duration (not unset, not indefinite)."""
        return self.pause.delta if isinstance(self.pause, DurationString) else None


def _default_steps() -> list[Step]:
    return [Step(set_weight=10, pause="1m"), Step(set_weight=50, pause="1m")]


class HeaderMatch(ApiModel):
    """Match requests by an HTTP header."""

    name: Annotated[
        str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_|~`]+$")
    ]
    """Header name, case-insensitive."""
    value: Annotated[str, Field(min_length=1, max_length=4096)]
    """Value to compare with."""
    type: Literal["Exact", "RegularExpression"] = "Exact"
    """How to compare."""


class CookieMatch(ApiModel):
    """Match requests by a cookie."""

    name: Annotated[
        str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_|~`]+$")
    ]
    """Cookie name."""
    value: Annotated[str, Field(min_length=1, max_length=4096)]
    """Exact cookie value."""


class MatchRule(ApiModel):
    """Requests that satisfy every header and cookie condition of a rule go to the candidate."""

    headers: Annotated[list[HeaderMatch] | None, Field(max_length=16)] = None
    """Header conditions, all of which must hold."""
    cookies: Annotated[list[CookieMatch] | None, Field(max_length=16)] = None
    """Cookie conditions, all of which must hold."""

    cel_rules = (
        CelRule(
            rule="(has(self.headers) && size(self.headers) > 0) || "
            "(has(self.cookies) && size(self.cookies) > 0)",
            message="a match rule needs at least one header or cookie condition",
        ),
    )

    @model_validator(mode="after")
    def _check_nonempty(self) -> Self:
        if not self.headers and not self.cookies:
            raise ValueError(self.cel_rules[0].message)
        return self


class MetricCheck(ApiModel):
    """A metric the analysis checks at every interval, with its limits."""

    name: DnsLabel
    """A built-in metric (error-rate, latency-p50, latency-p95, latency-p99, request-rate) or
    the name of a custom metric given by `query`."""
    max: float | None = None
    """Highest acceptable value: a ratio for error-rate (0.01 = 1%), milliseconds for latency
    (250), requests per second for request-rate. (A number, not a duration string, so that the
    API server can check it: CRD schemas cannot type a field as "number or string".)"""
    min: float | None = None
    """Lowest acceptable value, same units as max."""
    query: Annotated[str | None, Field(min_length=1, max_length=4096)] = None
    """PromQL for a custom metric (needs the prometheus provider); {{namespace}}, {{revision}}
    and {{interval}} are substituted."""

    cel_rules = (
        CelRule(
            rule=f"self.name in {_cel_list(BUILTIN_METRICS)} || has(self.query)",
            message="a metric that is not built in (error-rate, latency-p50, latency-p95, "
            "latency-p99, request-rate) needs a PromQL query",
            field_path=".query",
        ),
        CelRule(
            rule="has(self.max) || has(self.min)",
            message="set max, min or both, so the check has a limit",
            field_path=".max",
        ),
        CelRule(
            rule="!has(self.max) || !has(self.min) || self.min <= self.max",
            message="min must be less than or equal to max: no value could pass both",
            field_path=".min",
        ),
    )

    @model_validator(mode="after")
    def _check_metric(self) -> Self:
        if self.name not in BUILTIN_METRICS and self.query is None:
            raise ValueError(self.cel_rules[0].message)
        if self.max is None and self.min is None:
            raise ValueError(self.cel_rules[1].message)
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(self.cel_rules[2].message)
        return self


class PodsProvider(ApiModel):
    """Scrape each revision's pods through the API server; needs nothing else installed."""


class PrometheusProvider(ApiModel):
    """Query a Prometheus the cluster already runs."""

    address: Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://")]
    """Base URL, e.g. http://prometheus.monitoring:9090."""
    token_secret_ref: SecretKeyRef | None = None
    """Bearer token for the query API."""


class MetricsProvider(ApiModel):
    """Where analysis reads metrics from; exactly one provider."""

    pods: PodsProvider | None = None
    """Scrape the serving pods directly (default)."""
    prometheus: PrometheusProvider | None = None
    """Query Prometheus with PromQL."""

    cel_rules = (
        CelRule(
            rule="has(self.pods) != has(self.prometheus)",
            message="choose exactly one metrics provider: pods or prometheus",
        ),
    )

    @model_validator(mode="after")
    def _check_one(self) -> Self:
        if (self.pods is None) == (self.prometheus is None):
            raise ValueError(self.cel_rules[0].message)
        return self


def _default_metrics() -> list[MetricCheck]:
    return [MetricCheck(name="error-rate", max=0.01), MetricCheck(name="latency-p99", max=500)]


class Analysis(ApiModel):
    """How a new revision is judged while it takes traffic."""

    interval: PositiveDuration = DurationString("30s")
    """Time between checks; each check looks at the requests of the last interval."""
    min_requests: Annotated[int, Field(ge=0, le=1_000_000_000)] = 100
    """Requests a revision must have served in an interval before a check can pass or fail;
    fewer makes the check Inconclusive, never Failed. A check counts as a pass only on at least
    this many requests, and at least one, even when set to 0: nothing is promoted on silence."""
    failure_limit: Annotated[int, Field(ge=1, le=100)] = 2
    """Failed checks in a row that roll the new revision back."""
    iterations: Annotated[int, Field(ge=1, le=1000)] = 10
    """Checks passed on real traffic (see minRequests) needed to promote in ABTest and
    BlueGreen rollouts. Quiet checks do not count: a BlueGreen candidate takes no live traffic,
    so send requests to its preview Service (status.previewUrl, NAME-canary) or run
    `modeldeploy promote`; until then the rollout waits (reason AwaitingVerification)."""
    judge: Judge = Judge.THRESHOLD
    """threshold: each metric within its limits. statistical: also compare the new revision
    with the stable one over the same interval (two-proportion test for errors, rank test for
    latency), which tolerates noise that makes fixed limits flap."""
    confidence: Annotated[float, Field(ge=0.5, le=0.999)] = 0.95
    """Confidence level of the statistical judge."""
    metrics: Annotated[list[MetricCheck], Field(min_length=1, max_length=16)] = Field(
        default_factory=_default_metrics
    )
    """Metrics checked at every interval."""
    provider: MetricsProvider = Field(default_factory=lambda: MetricsProvider(pods=PodsProvider()))
    """Where the metrics come from."""

    cel_rules = (
        CelRule(
            rule="!has(self.metrics) || !self.metrics.exists(m, has(m.query)) || "
            "(has(self.provider) && has(self.provider.prometheus))",
            message="metrics with a PromQL query need provider.prometheus",
            field_path=".provider",
        ),
    )

    @model_validator(mode="after")
    def _check_queries(self) -> Self:
        if any(m.query for m in self.metrics) and self.provider.prometheus is None:
            raise ValueError(self.cel_rules[0].message)
        return self


class ParentRef(ApiModel):
    """A Gateway that the HTTPRoute attaches to."""

    name: ObjectName
    """Gateway name."""
    namespace: DnsLabel | None = None
    """Gateway namespace; defaults to the ModelDeployment's."""
    section_name: DnsLabel | None = None
    """Listener of the Gateway."""


class ReplicaRatio(ApiModel):
    """Approximate weights by the ratio of replicas behind one Service; no mesh needed."""


class GatewayApi(ApiModel):
    """Exact weights and header/cookie matches on a Gateway API HTTPRoute."""

    parent_refs: Annotated[list[ParentRef], Field(min_length=1, max_length=8)]
    """Gateways the route attaches to."""
    hostnames: Annotated[
        list[Annotated[str, Field(max_length=253)]] | None, Field(max_length=16)
    ] = None
    """Hostnames the route answers for."""
    mirror: bool = False
    """Also copy stable traffic to the candidate and discard its answers (shadow testing)."""


class TrafficRouting(ApiModel):
    """How traffic is split between revisions; exactly one way."""

    replica_ratio: ReplicaRatio | None = None
    """Split by replica counts behind the entry Service (default)."""
    gateway_api: Annotated[GatewayApi | None, Field(alias="gatewayAPI")] = None
    """Split on an HTTPRoute."""

    cel_rules = (
        CelRule(
            rule="has(self.replicaRatio) != has(self.gatewayAPI)",
            message="choose exactly one of replicaRatio or gatewayAPI",
        ),
    )

    @model_validator(mode="after")
    def _check_one(self) -> Self:
        if (self.replica_ratio is None) == (self.gateway_api is None):
            raise ValueError(self.cel_rules[0].message)
        return self


class Rollout(ApiModel):
    """How a new revision replaces the stable one."""

    strategy: Strategy = Strategy.CANARY
    """Canary: shift traffic in steps. ABTest: send matching requests to the candidate.
    BlueGreen: run the candidate at full size without live traffic under every router (tests
    reach it through the preview Service NAME-canary), then switch at once.
    Immediate: switch without analysis."""
    steps: Annotated[list[Step], Field(min_length=1, max_length=20)] = Field(
        default_factory=_default_steps
    )
    """Canary steps; setWeight must increase from step to step."""
    match: Annotated[list[MatchRule] | None, Field(max_length=8)] = None
    """ABTest: which requests go to the candidate (any rule may match)."""
    analysis: Analysis = Field(default_factory=Analysis)
    """How the candidate is judged."""
    traffic_routing: TrafficRouting = Field(
        default_factory=lambda: TrafficRouting(replica_ratio=ReplicaRatio())
    )
    """How traffic is split."""
    scale_down_delay: Duration = DurationString("30s")
    """How long the previous revision keeps running after a promotion, so in-flight requests
    finish and a rollback is instant."""
    hooks: Hooks | None = None
    """Verification Jobs or webhooks before the new revision takes traffic, before it takes
    over, after a promotion and after a rollback."""
    notifications: NotifierList | None = None
    """Webhooks told when a rollout starts, advances a step, is promoted or rolled back, or a
    hook fails; sent in the background, never waited on."""
    allow_signature_change: bool = False
    """Roll out a model whose inputs or outputs break clients of the one serving (an input
    removed or renamed, a datatype or a fixed dimension changed). Off, the operator reads the
    candidate's OIP metadata from one of its Ready pods before it gets any traffic, compares it
    with the stable revision's as `modeldeploy check-model` does, and refuses a breaking change
    (phase Failed, Degraded reason IncompatibleSignature naming the tensor); additions are
    reported and never block. Set it when the clients already send what the new model asks."""

    cel_rules = (
        CelRule(
            rule="!has(self.strategy) || self.strategy != 'ABTest' || "
            "(has(self.match) && size(self.match) > 0)",
            message="strategy ABTest needs match rules that say which requests go to the "
            "candidate: add rollout.match",
            field_path=".match",
        ),
        CelRule(
            rule="!has(self.strategy) || self.strategy != 'ABTest' || "
            "(has(self.trafficRouting) && has(self.trafficRouting.gatewayAPI))",
            message="strategy ABTest routes by header or cookie, which needs "
            "trafficRouting.gatewayAPI",
            field_path=".trafficRouting",
        ),
        CelRule(
            rule="!has(self.steps) || (self.steps.map(s, s.setWeight).isSorted() && "
            "self.steps.all(s, self.steps.filter(t, t.setWeight == s.setWeight).size() == 1))",
            message="steps: setWeight must increase from each step to the next",
            field_path=".steps",
        ),
    )

    @model_validator(mode="after")
    def _check_rollout(self) -> Self:
        if self.strategy == Strategy.AB_TEST:
            if not self.match:
                raise ValueError(self.cel_rules[0].message)
            if self.traffic_routing.gateway_api is None:
                raise ValueError(self.cel_rules[1].message)
        weights = [s.set_weight for s in self.steps]
        if any(b <= a for a, b in pairwise(weights)):
            raise ValueError(self.cel_rules[2].message)
        return self


# --- the whole spec --------------------------------------------------------------------------


class ModelDeploymentSpec(ApiModel):
    """A model to serve and how to roll out its new versions."""

    model: ModelSource
    """The model file to serve."""
    serving: Serving = Field(default_factory=Serving)
    """How the serving pods run."""
    autoscaling: Autoscaling | None = None
    """Scale the stable revision between minReplicas and maxReplicas on CPU; replaces
    serving.replicas."""
    rollout: Rollout = Field(default_factory=Rollout)
    """How new revisions are rolled out."""
    paused: bool = False
    """Hold any rollout in progress where it is (traffic stays as it is) until set back to false."""
    revision_history_limit: Annotated[int, Field(ge=0, le=50)] = 3
    """Old revisions kept scaled to zero for an instant rollback."""
