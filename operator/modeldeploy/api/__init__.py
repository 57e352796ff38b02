"""The ModelDeployment API (`modeldeploy.io/v1alpha1`): the single source of truth.

The CRD's schema, CEL rules, defaults and printer columns, and docs/api.md, are generated from
these models; a test fails when the committed copies drift.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field, field_validator

from modeldeploy.api.action import action_problem
from modeldeploy.api.base import ApiModel
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus

GROUP: Final = "modeldeploy.io"
VERSION: Final = "v1alpha1"
KIND: Final = "ModelDeployment"
PLURAL: Final = "modeldeployments"
API_VERSION: Final = f"{GROUP}/{VERSION}"
ACTION_ANNOTATION: Final = f"{GROUP}/action"


class ObjectMeta(ApiModel):
    """The part of metadata that offline validation checks; the rest passes through."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[
        str, Field(min_length=1, max_length=45, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    ]
    """At most 45 characters, so NAME-<hash> and NAME-canary stay valid Service names."""
    namespace: str | None = None
    annotations: dict[str, str] | None = None

    @field_validator("annotations")
    @classmethod
    def _check_action(cls, annotations: dict[str, str] | None) -> dict[str, str] | None:
        """The action annotation's form (the API server cannot check annotations)."""
        action = (annotations or {}).get(ACTION_ANNOTATION)
        problem = action_problem(action) if action is not None else None
        if action is not None and problem:
            raise ValueError(f"{problem}; got {action[:80]!r}")
        return annotations


class ModelDeployment(ApiModel):
    """A whole ModelDeployment object, as `kubectl apply` sends it."""

    api_version: Literal["modeldeploy.io/v1alpha1"]
    kind: Literal["ModelDeployment"]
    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> ModelDeployment:
        return cls.model_validate(obj)


__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
]
