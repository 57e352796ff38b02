"""Go-style durations ("250ms", "30s", "1h30m") as the Kubernetes ecosystem writes them.

Users copy these from Argo Rollouts and Flagger manifests, and the API server's CEL `duration()`
understands the same syntax, so the operator parses exactly what the CRD lets through: units
ms, s, m and h, no sign, no spaces.

On the API models a duration is a `DurationString`: the text the user wrote (what the wire, the
CRD and a PromQL range carry) with its length parsed once, at validation, as Argo Rollouts'
`DurationString.Duration()` gives it; nothing downstream parses the same text again.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Final, Self

from pydantic import GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

# Kept in one place: the CRD's CEL rule and the Python validator both use this pattern.
DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DURATION_HINT: Final = "must be a duration such as 250ms, 30s, 2m or 1h30m (units ms, s, m, h)"
_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION: Final = "2562047h"
"""The longest duration accepted anywhere: the API server's CEL `duration()` holds a Go
`time.Duration` (int64 nanoseconds, at most 2562047h47m16.854775807s) and fails on anything
longer with an error a user cannot act on, so the CRD and this module refuse it first, in
whole hours."""
MAX_DURATION_SECONDS: Final = 2562047 * 3600.0
MAX_DURATION_HINT: Final = (
    f"must be at most {MAX_DURATION}, the longest duration the API server's CEL duration() holds"
)


def parse_duration(text: str) -> float:
    """Seconds in a duration string; ValueError naming the accepted form otherwise.

    >>> parse_duration("1m30s")
    90.0
    >>> parse_duration("250ms")
    0.25
    """
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} {DURATION_HINT}")
    seconds = sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(text))
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} {MAX_DURATION_HINT}")
    return seconds


def cel_seconds(text: str) -> str:
    """A CEL expression for the seconds in the duration string `text` (a CEL expression that
    matches DURATION_PATTERN), computed without `duration()`, which fails on long ones.

    Kubernetes' CEL libraries give findAll, substring and a list's sum.
    """
    part = (
        "p.endsWith('ms') ? double(p.substring(0, size(p) - 2)) / 1000.0"
        " : p.endsWith('h') ? double(p.substring(0, size(p) - 1)) * 3600.0"
        " : p.endsWith('m') ? double(p.substring(0, size(p) - 1)) * 60.0"
        " : double(p.substring(0, size(p) - 1))"
    )
    return f"{text}.findAll(r'{_PART.pattern.replace('?:', '')}').map(p, {part}).sum()"


def cel_in_range(text: str) -> str:
    """CEL: the duration string `text` (matching DURATION_PATTERN) is at most MAX_DURATION."""
    return f"{cel_seconds(text)} <= {MAX_DURATION_SECONDS}"


def format_duration(seconds: float) -> str:
    """The shortest duration string for a number of seconds (inverse of parse_duration).

    >>> format_duration(90)
    '1m30s'
    >>> format_duration(0.25)
    '250ms'
    """
    if seconds < 0:
        raise ValueError(f"durations are never negative, got {seconds}")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


class DurationString(str):
    """A duration as written ("1m30s"), which it equals and prints as, with its length.

    >>> d = DurationString("1m30s")
    >>> d == "1m30s", d.seconds, d.delta.total_seconds()
    (True, 90.0, 90.0)
    """

    seconds: float
    """Its length in seconds, parsed when the string was made."""

    def __new__(cls, text: str) -> Self:
        seconds = parse_duration(text)  # ValueError naming the accepted form
        duration = super().__new__(cls, text)
        duration.seconds = seconds
        return duration

    @property
    def delta(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        """Any string is parsed once; a DurationString (a default, a copied model) is kept."""

        def parse(value: Any, to_text: core_schema.ValidatorFunctionWrapHandler) -> DurationString:
            return value if isinstance(value, cls) else cls(to_text(value))

        return core_schema.no_info_wrap_validator_function(
            parse, core_schema.str_schema(), serialization=core_schema.to_string_ser_schema()
        )
