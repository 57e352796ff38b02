"""Is a live object already what we want? The check that keeps no-op reconciles write-free.

Server-side apply owns exactly the fields we send, and the API server adds defaults around
them, so "already applied" means: every field we send is present in the live object with the
same value. Quantities compare by value, since the API server rewrites "0.5" as "500m".
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Final

_SUFFIX: Final[dict[str, Decimal | int]] = {
    "": 1,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY: Final = re.compile(r"^([+-]?[0-9.]+)([numkMGTPE]i?|)$")


def quantity(text: str) -> Decimal | None:
    """The value of a Kubernetes quantity, or None if the text is not one.

    >>> quantity("500m") == quantity("0.5")
    True
    """
    match = _QUANTITY.match(text)
    if not match or match.group(2) not in _SUFFIX:
        return None
    try:
        return Decimal(match.group(1)) * Decimal(_SUFFIX[match.group(2)])
    except InvalidOperation:
        return None


def is_subset(desired: Any, live: Any) -> bool:
    """True when every field of `desired` is in `live` with an equal value.

    >>> is_subset({"a": [{"name": "x", "v": 1}]}, {"a": [{"name": "y"}, {"name": "x", "v": 1}]})
    True
    >>> is_subset({"cpu": "0.5"}, {"cpu": "500m", "memory": "1Gi"})
    True
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            k in live and is_subset(v, live[k]) for k, v in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list):
            return False
        if desired and all(isinstance(d, dict) and "name" in d for d in desired):
            # A list keyed by name (containers, env, ports, volumes) merges under server-side
            # apply: entries another manager added stay theirs and are no drift of ours.
            by_name = {v.get("name"): v for v in live if isinstance(v, dict)}
            return all(d["name"] in by_name and is_subset(d, by_name[d["name"]]) for d in desired)
        return len(desired) == len(live) and all(
            is_subset(d, v) for d, v in zip(desired, live, strict=True)
        )
    if desired == live:
        return True
    if isinstance(desired, str | int) and isinstance(live, str | int):
        a, b = quantity(str(desired)), quantity(str(live))
        return a is not None and a == b
    return False
