"""Go-style durations ("250ms", "30s", "1h30m") as the Kubernetes ecosystem writes them.

Users copy these from Argo Rollouts and Flagger manifests, and the API server's CEL `duration()`
understands the same syntax, so the operator parses exactly what the CRD lets through: units
ms, s, m and h, no sign, no spaces.
"""

from __future__ import annotations

import re
from typing import Final

# Kept in one place: the CRD's CEL rule and the Python validator both use this pattern.
DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DURATION_HINT: Final = "must be a duration such as 250ms, 30s, 2m or 1h30m (units ms, s, m, h)"
_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration string; ValueError naming the accepted form otherwise.

    >>> parse_duration("1m30s")
    90.0
    >>> parse_duration("250ms")
    0.25
    """
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} {DURATION_HINT}")
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(text))


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
