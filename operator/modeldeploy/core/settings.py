"""Operator configuration, read from an injected environment so tests pass their own."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

DEFAULT_IMAGE: Final = "modeldeploy/serving:dev"  # what hack/images/build.sh tags


@dataclass(frozen=True)
class Settings:
    """What the operator was installed with (Helm values end up here as environment variables)."""

    serving_image: str = DEFAULT_IMAGE
    """Serving image for ModelDeployments that do not name one."""
    image_pull_policy: str = "IfNotPresent"
    resync_seconds: float = 30.0
    """How often every ModelDeployment is reconciled even without events (repairs drift)."""
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty means the whole cluster."""
    workers: int = 32
    """Reconciles in flight at once (threads; they mostly wait on the API server)."""
    default_cpu_request: str = "250m"
    default_memory_request: str = "256Mi"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        namespaces = tuple(n for n in env.get("MODELDEPLOY_NAMESPACES", "").split(",") if n)
        return cls(
            serving_image=env.get("MODELDEPLOY_SERVING_IMAGE", DEFAULT_IMAGE),
            image_pull_policy=env.get("MODELDEPLOY_IMAGE_PULL_POLICY", "IfNotPresent"),
            resync_seconds=float(env.get("MODELDEPLOY_RESYNC_SECONDS", "30")),
            namespaces=namespaces,
            workers=int(env.get("MODELDEPLOY_WORKERS", "32")),
        )
