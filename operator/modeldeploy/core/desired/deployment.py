"""The Deployment of one revision: the serving pods, hardened and probed.

Model fetching: the serving image downloads and verifies the model itself into an emptyDir,
rather than an init container doing it. One image to build and trust, one place that checks
the sha256, and the readiness probe already covers "downloaded, verified, loaded, warmed up";
an init container would need its own image and would hide fetch errors from the server's
metrics. pvc:// models are the exception that needs Kubernetes: the claim is mounted read-only
and the server reads a plain file.
"""

from __future__ import annotations

import json
from typing import Any, Final

from modeldeploy.api.spec import ModelDeploymentSpec, Warmup
from modeldeploy.core.children import DEPLOYMENT
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.naming import (
    HTTP_PORT,
    MODEL_URI_ANNOTATION,
    MODEL_VERSION_ANNOTATION,
    REVISION_LABEL,
    common_labels,
    revision_selector,
)
from modeldeploy.core.settings import Settings

MODEL_CACHE: Final = "/var/cache/modelserve"
PVC_ROOT: Final = "/mnt/models"
TLS_DIR: Final = "/etc/modelserve/tls"
AUTH_DIR: Final = "/etc/modelserve/auth"
WARMUP_DIR: Final = "/etc/modelserve/warmup"
WARMUP_FILE: Final = "samples.json"
WARMUP_ANNOTATION: Final = "modeldeploy.io/warmup-samples"
"""Inline warm-up samples travel in this pod annotation, projected as a file by the downward
API: no extra child object to create, own and clean up, and a change of samples is a change of
the pod template (a new revision), as a change of what a pod runs should be."""
DRAIN_SECONDS: Final = 5
"""preStop sleep: endpoints controllers and kube-proxy stop routing before SIGTERM arrives."""


def model_location(uri: str) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """Where the server reads the model, plus the volumes and mounts that makes possible.

    >>> model_location("pvc://models/fraud/v7.onnx")[0]
    'file:///mnt/models/models/fraud/v7.onnx'
    """
    if not uri.startswith("pvc://"):
        return uri, [], []
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    volume = {"name": "model-pvc", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    mount = {"name": "model-pvc", "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True}
    return f"file://{PVC_ROOT}/{claim}/{path}", [volume], [mount]


def pvc_claim(uri: str) -> str | None:
    """The PersistentVolumeClaim a pvc:// URI needs, for the semantic checks."""
    return uri.removeprefix("pvc://").partition("/")[0] if uri.startswith("pvc://") else None


def _server_env(owner: Owner, spec: ModelDeploymentSpec, model_uri: str) -> list[dict[str, Any]]:
    """The serving image is configured by environment only (it knows nothing of Kubernetes)."""
    serving, model = spec.serving, spec.model
    env: dict[str, str | None] = {
        "MODELSERVE_MODEL": model_uri,
        "MODELSERVE_NAME": model.name or owner.name,
        "MODELSERVE_VERSION": model.version,
        "MODELSERVE_SHA256": model.sha256,
        "MODELSERVE_PORT": str(HTTP_PORT),
        "MODELSERVE_MODEL_DIR": MODEL_CACHE,
        "MODELSERVE_LOG_FORMAT": "json",
    }
    if serving.warmup:
        env["MODELSERVE_WARMUP_FILE"] = f"{WARMUP_DIR}/{WARMUP_FILE}"
    if serving.batching:
        # Opt-in: the server checks at start that batched rows equal rows run one by one.
        env["MODELSERVE_BATCHING"] = "true"
        env["MODELSERVE_MAX_BATCH_SIZE"] = str(serving.batching.max_batch_size)
        env["MODELSERVE_MAX_DELAY_MS"] = str(serving.batching.max_delay_ms)
    if serving.threads:
        env["MODELSERVE_INTRA_OP_THREADS"] = str(serving.threads.intra_op)
        env["MODELSERVE_INTER_OP_THREADS"] = str(serving.threads.inter_op)
    if serving.auth:
        path = f"{AUTH_DIR}/{serving.auth.secret_ref.key}"
        if serving.auth.type == "JWT":
            hs256 = serving.auth.algorithm == "HS256"
            env["MODELSERVE_JWT_SECRET_FILE" if hs256 else "MODELSERVE_JWT_PUBLIC_KEY_FILE"] = path
            env["MODELSERVE_JWT_AUDIENCE"] = serving.auth.audience
            env["MODELSERVE_JWT_ISSUER"] = serving.auth.issuer
        else:
            env["MODELSERVE_AUTH_TOKEN_FILE"] = path
    if serving.tls:
        env["MODELSERVE_TLS_CERT"] = f"{TLS_DIR}/tls.crt"
        env["MODELSERVE_TLS_KEY"] = f"{TLS_DIR}/tls.key"
    ours = [{"name": k, "value": v} for k, v in env.items() if v is not None]
    theirs = [e.to_wire() for e in serving.env or []]
    return ours + theirs


def _resources(spec: ModelDeploymentSpec, settings: Settings) -> dict[str, Any]:
    """Requests always include CPU: the HPA scales on CPU utilization of the request."""
    given = spec.serving.resources.to_wire() if spec.serving.resources else {}
    requests = {
        "cpu": settings.default_cpu_request,
        "memory": settings.default_memory_request,
        **given.get("requests", {}),
    }
    return {"requests": requests, **({"limits": given["limits"]} if "limits" in given else {})}


def _probe(path: str, scheme: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http", "scheme": scheme}, **timing}


def build_deployment(
    owner: Owner,
    spec: ModelDeploymentSpec,
    settings: Settings,
    revision: str,
    replicas: int | None,
) -> dict[str, Any]:
    """The Deployment of `revision`. `replicas` None leaves the count to the HPA."""
    serving = spec.serving
    model_uri, volumes, mounts = model_location(spec.model.uri)
    volumes = [
        {"name": "model-cache", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        *volumes,
    ]
    mounts = [
        {"name": "model-cache", "mountPath": MODEL_CACHE},
        {"name": "tmp", "mountPath": "/tmp"},
        *mounts,
    ]
    if serving.auth:
        volumes.append({"name": "auth", "secret": {"secretName": serving.auth.secret_ref.name}})
        mounts.append({"name": "auth", "mountPath": AUTH_DIR, "readOnly": True})
    pod_annotations: dict[str, str] = {}
    if serving.warmup:
        volumes.append(_warmup_volume(serving.warmup, pod_annotations))
        mounts.append({"name": "warmup", "mountPath": WARMUP_DIR, "readOnly": True})
    if serving.tls:
        volumes.append({"name": "tls", "secret": {"secretName": serving.tls.secret_name}})
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
    scheme = "HTTPS" if serving.tls else "HTTP"
    labels = {**common_labels(owner.name), **revision_selector(owner.name, revision)}
    if spec.model.version:
        labels = {**labels, "app.kubernetes.io/version": spec.model.version}

    container: dict[str, Any] = {
        "name": "modelserve",
        "image": serving.image or settings.serving_image,
        "imagePullPolicy": serving.image_pull_policy or settings.image_pull_policy,
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": _server_env(owner, spec, model_uri),
        "resources": _resources(spec, settings),
        "volumeMounts": mounts,
        # Downloads of large models take a while: the startup probe allows 10 minutes.
        "startupProbe": _probe("/v2/health/live", scheme, periodSeconds=2, failureThreshold=300),
        "livenessProbe": _probe("/v2/health/live", scheme, periodSeconds=10, failureThreshold=3),
        "readinessProbe": _probe("/v2/health/ready", scheme, periodSeconds=2, failureThreshold=2),
        "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30 + DRAIN_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    for field in (
        "node_selector",
        "affinity",
        "topology_spread_constraints",
        "priority_class_name",
        "service_account_name",
    ):
        value = getattr(serving, field)
        if value:
            pod_spec[_camel(field)] = value
    if serving.tolerations:
        pod_spec["tolerations"] = [t.to_wire() for t in serving.tolerations]

    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": revision_selector(owner.name, revision)},
        "revisionHistoryLimit": 1,
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
        },
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(HTTP_PORT),
                    "prometheus.io/path": "/metrics",
                    **pod_annotations,
                },
            },
            "spec": pod_spec,
        },
    }
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    return {
        "apiVersion": DEPLOYMENT.api_version,
        "kind": DEPLOYMENT.kind,
        "metadata": owner.metadata(
            revision,
            labels={REVISION_LABEL: revision},
            annotations={
                MODEL_URI_ANNOTATION: spec.model.uri,
                MODEL_VERSION_ANNOTATION: spec.model.version or "",
            },
        ),
        "spec": deployment_spec,
    }


def _warmup_volume(warmup: Warmup, pod_annotations: dict[str, str]) -> dict[str, Any]:
    """The volume holding the warm-up samples as one file, from a ConfigMap key or inline.

    >>> annotations: dict[str, str] = {}
    >>> volume = _warmup_volume(Warmup(samples=[{"inputs": [{"name": "x"}]}]), annotations)
    >>> volume["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"]
    "metadata.annotations['modeldeploy.io/warmup-samples']"
    >>> annotations[WARMUP_ANNOTATION]
    '[{"inputs":[{"name":"x"}]}]'
    """
    ref = warmup.config_map_key_ref
    if ref is not None:
        source: dict[str, Any] = {
            "name": ref.name,
            "items": [{"key": ref.key, "path": WARMUP_FILE}],
        }
        if ref.optional is not None:
            source["optional"] = ref.optional
        return {"name": "warmup", "configMap": source}
    pod_annotations[WARMUP_ANNOTATION] = json.dumps(warmup.samples, separators=(",", ":"))
    field = {"fieldPath": f"metadata.annotations['{WARMUP_ANNOTATION}']"}
    return {"name": "warmup", "downwardAPI": {"items": [{"path": WARMUP_FILE, "fieldRef": field}]}}


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)
