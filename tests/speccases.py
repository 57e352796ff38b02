"""One table of bad ModelDeployments, run through both gates that must refuse them.

The unit tests run each case through `modeldeploy validate` (pydantic, offline); the integration
tests send each to the real API server with `kubectl apply`. Both must name the same field.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def good_spec(name: str = "bad") -> dict[str, Any]:
    """A valid object the cases break one field of (the canary example, renamed)."""
    doc = yaml.safe_load((EXAMPLES / "canary.yaml").read_text())
    doc["metadata"] = {"name": name}
    return doc


@dataclass(frozen=True)
class BadSpec:
    id: str
    mutate: Callable[[dict[str, Any]], None]
    field: str
    """The field path both gates must name."""
    says: str
    """A fragment of the message that tells the fix (the API server's wording)."""
    offline_says: str | None = None
    """The offline wording when it differs from the API server's."""
    extra: dict[str, Any] = field(default_factory=dict)

    def document(self, name: str = "bad") -> dict[str, Any]:
        doc = copy.deepcopy(good_spec(name))
        self.mutate(doc)
        return doc


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


def _many(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        for m in mutations:
            m(doc)

    return mutate


_DELETE = object()
GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "ml-gateway"}]}}

BAD_SPECS = [
    BadSpec("missing-uri", _set("spec.model.uri", _DELETE), "spec.model.uri", "Required value"),
    BadSpec(
        "bad-sha256",
        _set("spec.model.sha256", "abc123"),
        "spec.model.sha256",
        "should match '^[a-f0-9]{64}$'",
        offline_says="should match pattern '^[a-f0-9]{64}$'",
    ),
    BadSpec(
        "uri-scheme",
        _set("spec.model.uri", "ftp://models/x.onnx"),
        "spec.model.uri",
        "uri must start with http://, https://, s3://, pvc:// or file:///",
    ),
    BadSpec(
        "weight-150",
        _set("spec.rollout.steps", [{"setWeight": 150}]),
        "spec.rollout.steps[0].setWeight",
        "less than or equal to 100",
    ),
    BadSpec(
        "decreasing-weights",
        _set("spec.rollout.steps", [{"setWeight": 50}, {"setWeight": 10}]),
        "spec.rollout.steps",
        "setWeight must increase from each step to the next",
    ),
    BadSpec(
        "max-below-min",
        _set("spec.autoscaling", {"minReplicas": 4, "maxReplicas": 2}),
        "spec.autoscaling.maxReplicas",
        "maxReplicas must be greater than or equal to minReplicas",
    ),
    BadSpec(
        "unknown-strategy",
        _set("spec.rollout.strategy", "Linear"),
        "spec.rollout.strategy",
        'supported values: "Canary", "ABTest", "BlueGreen", "Immediate"',
        offline_says="'Canary', 'ABTest', 'BlueGreen' or 'Immediate'",
    ),
    BadSpec(
        "abtest-without-match",
        _many(
            _set("spec.rollout.strategy", "ABTest"), _set("spec.rollout.trafficRouting", GATEWAY)
        ),
        "spec.rollout.match",
        "strategy ABTest needs match rules",
    ),
    BadSpec(
        "abtest-without-gateway",
        _many(
            _set("spec.rollout.strategy", "ABTest"),
            _set("spec.rollout.match", [{"headers": [{"name": "x-variant", "value": "b"}]}]),
        ),
        "spec.rollout.trafficRouting",
        "needs trafficRouting.gatewayAPI",
    ),
    BadSpec(
        "negative-interval",
        _set("spec.rollout.analysis.interval", "-30s"),
        "spec.rollout.analysis.interval",
        "must be a duration such as 250ms, 30s",
    ),
    BadSpec(
        "zero-interval",
        _set("spec.rollout.analysis.interval", "0s"),
        "spec.rollout.analysis.interval",
        "greater than zero",
    ),
    BadSpec(
        "unknown-field",
        _set("spec.modle", {"uri": "https://x/y.onnx"}),
        "spec.modle",
        'unknown field "spec.modle"',
        offline_says="unknown field",
    ),
    BadSpec(
        "two-routers",
        _set("spec.rollout.trafficRouting", {"replicaRatio": {}, **GATEWAY}),
        "spec.rollout.trafficRouting",
        "choose exactly one of replicaRatio or gatewayAPI",
    ),
    BadSpec(
        "custom-metric-without-query",
        _set("spec.rollout.analysis.metrics", [{"name": "accuracy", "min": 0.9}]),
        "spec.rollout.analysis.metrics[0].query",
        "needs a PromQL query",
    ),
    BadSpec(
        "metric-without-limit",
        _set("spec.rollout.analysis.metrics", [{"name": "error-rate"}]),
        "spec.rollout.analysis.metrics[0].max",
        "set max, min or both",
    ),
    BadSpec(
        "threshold-not-a-number",
        _set("spec.rollout.analysis.metrics", [{"name": "latency-p99", "max": "250ms"}]),
        "spec.rollout.analysis.metrics[0].max",
        "must be of type number",
        offline_says="Input should be a valid number",
    ),
    BadSpec(
        "bad-pause",
        _set("spec.rollout.steps", [{"setWeight": 10, "pause": "forever"}]),
        "spec.rollout.steps[0].pause",
        "pause must be a duration such as 60s or 2m, or 'indefinite'",
    ),
    BadSpec(
        "negative-replicas",
        _set("spec.serving.replicas", -1),
        "spec.serving.replicas",
        "greater than or equal to 0",
    ),
    BadSpec(
        "failure-limit-zero",
        _set("spec.rollout.analysis.failureLimit", 0),
        "spec.rollout.analysis.failureLimit",
        "greater than or equal to 1",
    ),
    BadSpec(
        "bad-quantity",
        _set("spec.serving.resources.requests.cpu", "lots"),
        "spec.serving.resources.requests.cpu",
        "should match",
        offline_says="is not a Kubernetes quantity",
    ),
    BadSpec(
        "env-value-and-valuefrom",
        _set(
            "spec.serving.env",
            [
                {
                    "name": "A",
                    "value": "1",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                }
            ],
        ),
        "spec.serving.env[0]",
        "set value or valueFrom, not both",
    ),
    BadSpec(
        "quantity-decimal-exponent",
        _set("spec.serving.resources", {"limits": {"cpu": ".1E.0"}}),
        "spec.serving.resources.limits.cpu",
        "should match",
        offline_says="is not a Kubernetes quantity",
    ),
    BadSpec(
        "warmup-two-sources",
        _set(
            "spec.serving.warmup",
            {
                "samples": [{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}],
                "configMapKeyRef": {"name": "samples", "key": "iris.json"},
            },
        ),
        "spec.serving.warmup",
        "warmup needs exactly one of samples or configMapKeyRef",
    ),
    BadSpec(
        "env-duplicate-name",
        _set("spec.serving.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.serving.env",
        "each environment variable name at most once",
    ),
    BadSpec(
        "env-operator-name",
        _set("spec.serving.env", [{"name": "MODELSERVE_PORT", "value": "9000"}]),
        "spec.serving.env[0].name",
        "is set by the operator",
    ),
    BadSpec(
        "extended-resource-without-limit",
        _set("spec.serving.resources", {"requests": {"nvidia.com/gpu": 1}}),
        "spec.serving.resources.limits",
        "extended resources such as nvidia.com/gpu need a limit",
    ),
    BadSpec(
        "metric-min-above-max",
        _set("spec.rollout.analysis.metrics", [{"name": "request-rate", "min": 10, "max": 5}]),
        "spec.rollout.analysis.metrics[0].min",
        "min must be less than or equal to max",
    ),
    BadSpec(
        "scale-down-delay-out-of-range",
        _set("spec.rollout.scaleDownDelay", "3000000h"),
        "spec.rollout.scaleDownDelay",
        "at most 2562047h",
    ),
    BadSpec(
        "interval-out-of-range",
        _set("spec.rollout.analysis.interval", "99999999999999h"),
        "spec.rollout.analysis.interval",
        "at most 2562047h",
    ),
    BadSpec(
        "pause-out-of-range",
        _set("spec.rollout.steps", [{"setWeight": 10, "pause": "2562048h"}]),
        "spec.rollout.steps[0].pause",
        "at most 2562047h",
    ),
    BadSpec(
        "webhook-url-scheme",
        _set(
            "spec.rollout.hooks",
            {"preRollout": [{"name": "checker", "webhook": {"url": "file:///etc/passwd"}}]},
        ),
        "spec.rollout.hooks.preRollout[0].webhook.url",
        "must be an http:// or https:// URL with a host",
    ),
    BadSpec(
        "hook-job-and-webhook",
        _set(
            "spec.rollout.hooks",
            {
                "prePromotion": [
                    {
                        "name": "checker",
                        "webhook": {"url": "http://checker.ml.svc/verify"},
                        "job": {
                            "template": {"spec": {"containers": [{"name": "c", "image": "curl"}]}}
                        },
                    }
                ]
            },
        ),
        "spec.rollout.hooks.prePromotion[0]",
        "a hook is either a job or a webhook: set exactly one",
    ),
    BadSpec(
        "webhook-timeout-over-60s",
        _set(
            "spec.rollout.hooks",
            {
                "preRollout": [
                    {"name": "checker", "webhook": {"url": "http://c.ml.svc/", "timeout": "2m"}}
                ]
            },
        ),
        "spec.rollout.hooks.preRollout[0].webhook.timeout",
        "a webhook's timeout is at most 60s",
    ),
    BadSpec(
        "notifier-url-and-url-from",
        _set(
            "spec.rollout.notifications",
            [
                {
                    "name": "team",
                    "url": "https://hooks.slack.com/services/x",
                    "urlFrom": {"secretKeyRef": {"name": "slack", "key": "url"}},
                }
            ],
        ),
        "spec.rollout.notifications[0]",
        "set exactly one of url or urlFrom",
    ),
    BadSpec(
        "notifier-url-scheme",
        _set("spec.rollout.notifications", [{"name": "team", "url": "gopher://x"}]),
        "spec.rollout.notifications[0].url",
        "must be an http:// or https:// URL with a host",
    ),
    BadSpec(
        "name-too-long",
        _set("metadata.name", "m" * 50),
        "metadata.name",
        "may not be more than 45",
        offline_says="at most 45 characters",
    ),
]


# A minimal Gateway API HTTPRoute CRD, for tests of the gatewayAPI routing path.
HTTPROUTE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {
        "name": "httproutes.gateway.networking.k8s.io",
        # *.k8s.io groups need this annotation; the real Gateway API CRDs carry the same one.
        "annotations": {
            "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/1538"
        },
    },
    "spec": {
        "group": "gateway.networking.k8s.io",
        "scope": "Namespaced",
        "names": {
            "kind": "HTTPRoute",
            "plural": "httproutes",
            "singular": "httproute",
            "listKind": "HTTPRouteList",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}
