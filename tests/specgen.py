"""Hypothesis strategies for ModelDeployment specs, from the CRD schema the API models generate.

A spec is the valid example (tests/speccases.good_spec) with one to three of its fields, at
paths drawn from the whole schema, replaced by values drawn from that field's schema: its type,
bounds, enum, pattern, and for strings checked only by a CEL `matches` (durations) that regex.
Cross-field CEL rules are not modelled: a draw they refuse is dropped offline (the same rules in
Python) before it costs an API request, and the API server is the judge of the rest.
"""

from __future__ import annotations

import copy
import re
import string
from typing import Any

from hypothesis import strategies as st

from modeldeploy.api.crd import openapi_schema
from speccases import good_spec

SPEC_SCHEMA: dict[str, Any] = openapi_schema()["properties"]["spec"]
_PRINTABLE = string.ascii_letters + string.digits + "-._/:@ "
_MATCHES = re.compile(r"self\.matches\(r'(.+?)'\)")


def _paths(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every property path in the schema (objects and leaves alike)."""
    found = [prefix] if prefix else []
    for name, child in (node.get("properties") or {}).items():
        found.extend(_paths(child, (*prefix, name)))
    return found


PATHS = _paths(SPEC_SCHEMA)


def _node(path: tuple[str, ...]) -> dict[str, Any]:
    node = SPEC_SCHEMA
    for name in path:
        node = node["properties"][name]
    return node


def _string(node: dict[str, Any]) -> st.SearchStrategy[str]:
    longest = min(int(node.get("maxLength", 24)), 24)
    shortest = int(node.get("minLength", 0))
    if "enum" in node:
        return st.sampled_from(node["enum"])
    pattern = node.get("pattern")
    if pattern is None:
        rules = [r["rule"] for r in node.get("x-kubernetes-validations", [])]
        matched = [m.group(1) for r in rules if (m := _MATCHES.search(r))]
        pattern = matched[0] if matched else None
    if pattern is not None:
        return st.from_regex(pattern, fullmatch=True).filter(
            lambda s: shortest <= len(s) <= int(node.get("maxLength", 10**6))
        )
    return st.text(_PRINTABLE, min_size=shortest, max_size=max(longest, shortest))


def value(node: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """A value of one schema node (structural CRD schema: no refs, no null types)."""
    if node.get("x-kubernetes-int-or-string"):
        return st.one_of(st.integers(-2, 2000), _string({"pattern": node.get("pattern")}))
    kind = node.get("type")
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low, high = node.get("minimum", -5), node.get("maximum", 5000)
        return st.integers(low, high)
    if kind == "number":
        low, high = node.get("minimum"), node.get("maximum")
        return st.floats(low, high, allow_nan=False, allow_infinity=False)
    if kind == "string":
        return _string(node)
    if kind == "array":
        items = node.get("items") or {"type": "string"}
        most = min(int(node.get("maxItems", 3)), 3)
        return st.lists(value(items, depth + 1), min_size=int(node.get("minItems", 0)),
                        max_size=max(most, int(node.get("minItems", 0))))  # fmt: skip
    if kind == "object":
        props: dict[str, Any] = node.get("properties") or {}
        if not props:
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                keys = st.sampled_from(["cpu", "memory", "nvidia.com/gpu", "disktype", "a b"])
                return st.dictionaries(keys, value(extra, depth + 1), max_size=2)
            return st.just({})  # opaque (preserve-unknown-fields): left for another test
        required = set(node.get("required", []))
        optional = sorted(set(props) - required)
        if depth > 3:
            optional = []
        return st.fixed_dictionaries(
            {k: value(props[k], depth + 1) for k in sorted(required)},
            optional={k: value(props[k], depth + 1) for k in optional},
        )
    return st.just(None)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """A whole ModelDeployment document: the good example with some fields redrawn."""
    doc = copy.deepcopy(good_spec("generated"))
    for path in draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3, unique=True)):
        new = draw(value(_node(path)))
        node = doc["spec"]
        for name in path[:-1]:
            node = node.setdefault(name, {}) if isinstance(node.get(name), dict | None) else {}
        node[path[-1]] = new
    return doc
