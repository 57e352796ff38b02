"""Objects a spec refers to but does not create: the checks no CRD schema can express.

Pure: lists what must exist; the shell asks the API server and turns misses into Problems.
"""

from __future__ import annotations

from dataclasses import dataclass

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.core.desired.deployment import pvc_claim


@dataclass(frozen=True)
class Reference:
    kind: str
    """Secret, ConfigMap, PersistentVolumeClaim, or the CustomResourceDefinition of a kind the
    spec needs (HTTPRoute for gatewayAPI)."""
    name: str
    field: str
    """The spec field that names it, as kubectl would print the path."""


def references(spec: ModelDeploymentSpec) -> list[Reference]:
    serving = spec.serving
    refs = []
    if claim := pvc_claim(spec.model.uri):
        refs.append(Reference("PersistentVolumeClaim", claim, "spec.model.uri"))
    if serving.auth:
        refs.append(
            Reference("Secret", serving.auth.secret_ref.name, "spec.serving.auth.secretRef.name")
        )
    if serving.tls:
        refs.append(Reference("Secret", serving.tls.secret_name, "spec.serving.tls.secretName"))
    warmup_ref = serving.warmup.config_map_key_ref if serving.warmup else None
    if warmup_ref and not warmup_ref.optional:
        refs.append(
            Reference("ConfigMap", warmup_ref.name, "spec.serving.warmup.configMapKeyRef.name")
        )
    for i, env in enumerate(serving.env or []):
        source = env.value_from
        if source and source.secret_key_ref and not source.secret_key_ref.optional:
            refs.append(
                Reference(
                    "Secret",
                    source.secret_key_ref.name,
                    f"spec.serving.env[{i}].valueFrom.secretKeyRef.name",
                )
            )
        if source and source.config_map_key_ref and not source.config_map_key_ref.optional:
            refs.append(
                Reference(
                    "ConfigMap",
                    source.config_map_key_ref.name,
                    f"spec.serving.env[{i}].valueFrom.configMapKeyRef.name",
                )
            )
    if spec.rollout.traffic_routing.gateway_api is not None:
        refs.append(Reference("CustomResourceDefinition", "httproutes.gateway.networking.k8s.io",
                              "spec.rollout.trafficRouting.gatewayAPI"))  # fmt: skip
    provider = spec.rollout.analysis.provider.prometheus
    if provider and provider.token_secret_ref:
        refs.append(
            Reference(
                "Secret",
                provider.token_secret_ref.name,
                "spec.rollout.analysis.provider.prometheus.tokenSecretRef.name",
            )
        )
    return refs
