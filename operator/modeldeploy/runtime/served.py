"""What a revision's pods serve: their OIP v2 model metadata, read through the API server.

As the pods provider reads `/metrics`, this reads `GET /v2/models/NAME` of each Ready pod of a
revision through the API server's pod proxy, so it works from a laptop or a CI job with only a
kubeconfig (no network path to the pods). NAME is the model name the pod was started with
(its MODELSERVE_NAME), so a stable revision started before `spec.model.name` changed is still
asked by the name it serves.

The comparison of what was read is pure (modeldeploy.core.signature); this module only reads.
A served model with inference auth on answers its metadata only with credentials, which the
API server's proxy does not pass on (it consumes the Authorization header itself): such a pod
answers 401 and the error says to compare with the model file instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modeldeploy.core.naming import HTTP_PORT, label_selector, revision_selector
from modeldeploy.runtime.errors import KubeError
from modeldeploy.runtime.kube import TIMEOUT, Kube

NAME_ENV: Final = "MODELSERVE_NAME"
"""The serving container's environment variable that names the served model."""


@dataclass(frozen=True)
class ServedMetadata:
    """One pod's answer: the model name it serves and its metadata object."""

    pod: str
    model: str
    metadata: dict[str, Any]


def model_name(pod: Any, default: str) -> str:
    """The model name a pod serves: its containers' MODELSERVE_NAME, else `default`."""
    for container in (pod.spec.containers if pod.spec else None) or []:
        for env in container.env or []:
            if env.name == NAME_ENV and env.value:
                return str(env.value)
    return default


def ready_pods(kube: Kube, namespace: str, owner: str, revision: str) -> list[Any]:
    """The Ready pods of one revision of the ModelDeployment `owner` (V1Pod objects)."""
    selector = label_selector(revision_selector(owner, revision))
    try:
        pods = client.CoreV1Api(kube.api).list_namespaced_pod(
            namespace, label_selector=selector, _request_timeout=TIMEOUT
        )
    except ApiException as exc:
        raise KubeError(f"listing the pods of revision {namespace}/{revision}", exc) from exc
    return [
        pod
        for pod in pods.items
        if pod.metadata
        and any(
            c.type == "Ready" and c.status == "True"
            for c in ((pod.status.conditions if pod.status else None) or [])
        )
    ]


def pod_metadata(kube: Kube, namespace: str, pod: str, model: str, port: int) -> dict[str, Any]:
    """`GET /v2/models/MODEL` of one pod through the pod proxy, as the JSON object it answers.

    Read raw: the client's own decoding of a proxied JSON body returns Python's repr of it."""
    path = f"v2/models/{model}"
    doing = f"reading the model metadata ({path}) of pod {namespace}/{pod}"
    try:
        reply: Any = client.CoreV1Api(kube.api).connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:{port}", namespace, path, _request_timeout=TIMEOUT, _preload_content=False
        )
    except ApiException as exc:
        if exc.status == 401:
            why = ("the model server asks for credentials (inference auth is on), which the "
                   "API server's pod proxy does not pass on: compare with the model file "
                   "instead (--against-file)")  # fmt: skip
            raise KubeError(f"{doing}: {why}", "") from exc
        raise KubeError(doing, exc) from exc
    try:
        data = json.loads(reply.data)
    except ValueError as exc:
        raise KubeError(f"{doing}: the answer is not JSON: {exc}", "") from exc
    finally:
        reply.release_conn()
    if not isinstance(data, dict):
        raise KubeError(f"{doing}: the answer is not a JSON object", "")
    return data


def served_metadata(
    kube: Kube, namespace: str, owner: str, revision: str, *, port: int = HTTP_PORT
) -> list[ServedMetadata]:
    """The metadata of every Ready pod of `revision` that answered; KubeError when no pod is
    Ready, or none answered (the error of the first pod tried)."""
    pods = ready_pods(kube, namespace, owner, revision)
    if not pods:
        raise KubeError(f"reading the model metadata of revision {namespace}/{revision}: no "
                        "Ready pod serves it", "")  # fmt: skip
    answers: list[ServedMetadata] = []
    first: KubeError | None = None
    for pod in pods:
        name = str(pod.metadata.name)
        model = model_name(pod, owner)
        try:
            answers.append(ServedMetadata(name, model, pod_metadata(kube, namespace, name,
                                                                    model, port)))  # fmt: skip
        except KubeError as exc:
            first = first or exc
    if not answers and first is not None:
        raise first
    return answers
