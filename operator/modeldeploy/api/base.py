"""The base of every API model: camelCase on the wire, unknown fields refused, CEL rules attached.

A cross-field rule is written twice, on purpose and side by side: once in CEL, so that the API
server refuses a bad object at `kubectl apply` time, and once in Python, so that
`modeldeploy validate` refuses it offline (in a CI gate) with the very same message. Both live on
the model class through `CelRule`, and the tests run one table of bad specs through both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


@dataclass(frozen=True)
class CelRule:
    """One `x-kubernetes-validations` entry.

    `field_path` (relative, like ".maxReplicas") makes the API server report the error on that
    field instead of on the enclosing object, so the message points at what to change.
    """

    rule: str
    message: str
    field_path: str | None = None

    def as_schema(self) -> dict[str, str]:
        entry = {"rule": self.rule, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        return entry


class ApiModel(BaseModel):
    """Base for every spec and status model."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        if cls.cel_rules:
            target["x-kubernetes-validations"] = [r.as_schema() for r in cls.cel_rules]
        return schema

    def to_wire(self) -> dict[str, Any]:
        """The object as it appears in YAML: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def rule_field_path(message: str) -> str | None:
    """The fieldPath of the CEL rule with this message, so offline errors point at the same field.

    Python validators of a whole object can only report the object's location; the API server
    reports the rule's fieldPath. Looking the rule up by its message keeps the two in step.
    """
    pending: list[type[ApiModel]] = [ApiModel]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        for rule in cls.cel_rules:
            if rule.message == message:
                return rule.field_path
    return None


def opaque_schema(kind: str) -> dict[str, Any]:
    """Schema of a field passed through to a Kubernetes object unchanged (affinity and the like).

    Re-declaring upstream's large schemas here would go stale; the API server validates them
    when the operator writes the Deployment, and the operator reports that as a condition.
    """
    return {
        "type": kind,
        "x-kubernetes-preserve-unknown-fields": True,
    }
