"""Scalar types shared by the spec: durations, quantities, thresholds, Kubernetes names.

Each type carries its own CRD schema (through `WithJsonSchema`) and its own Python check, so the
API server and `modeldeploy validate` refuse the same values with the same words.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field, WithJsonSchema

from modeldeploy.api.durations import (
    DURATION_HINT,
    DURATION_PATTERN,
    MAX_DURATION_HINT,
    DurationString,
    cel_in_range,
)

POSITIVE_DURATION_HINT: Final = DURATION_HINT + ", greater than zero"
# Kubernetes' quantity syntax as its parser takes it. controller-gen's pattern for
# resource.Quantity also allows a decimal exponent (".1E.0"), which the API server's own parser
# then refuses when the operator writes the Deployment: the exponent here is whole.
_NUMBER = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
QUANTITY_PATTERN: Final = rf"^(\+|-)?{_NUMBER}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]+))?$"
DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def _positive_duration(duration: DurationString) -> DurationString:
    if duration.seconds <= 0:
        raise ValueError(f"{duration!r} {POSITIVE_DURATION_HINT}")
    return duration


def _cel_duration(*extra: dict[str, str]) -> dict[str, Any]:
    """A duration's schema: its form, then its range (checked only on the right form), then
    `extra` rules, which may call `duration(self)`: they run only on strings it can hold."""
    well_formed = f"self.matches(r'{DURATION_PATTERN}')"
    return {
        "type": "string",
        "maxLength": 32,
        "x-kubernetes-validations": [
            {"rule": well_formed, "message": DURATION_HINT},
            {"rule": f"!{well_formed} || {cel_in_range('self')}", "message": MAX_DURATION_HINT},
            *(
                {"rule": f"!({well_formed} && {cel_in_range('self')}) || {e['rule']}",
                 "message": e["message"]}
                for e in extra
            ),
        ],
    }  # fmt: skip


Duration = Annotated[DurationString, WithJsonSchema(_cel_duration())]
"""A non-negative Go-style duration string, at most MAX_DURATION."""

PositiveDuration = Annotated[
    DurationString,
    AfterValidator(_positive_duration),
    WithJsonSchema(
        _cel_duration(
            {"rule": "duration(self) > duration('0s')", "message": POSITIVE_DURATION_HINT}
        )
    ),
]
"""A Go-style duration string greater than zero."""


def _quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 2, 512Mi or 1Gi")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes resource quantity (500m, 2, 512Mi)."""

DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
"""A DNS-1123 label: what Kubernetes accepts as a Service or container name."""

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
"""A DNS-1123 subdomain: what Kubernetes accepts as a Secret, ConfigMap or PVC name."""

Percent = Annotated[int, Field(ge=0, le=100)]
"""A traffic weight in percent."""
