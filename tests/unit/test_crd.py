"""The CRD and docs/api.md: generated from the models, committed, and kept in step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.api import ModelDeploymentSpec
from modeldeploy.api.apidocs import render_docs
from modeldeploy.api.crd import build_crd, openapi_schema, render_crd

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "run `make generate` and commit the result"


@pytest.mark.parametrize(
    "path",
    [
        "crds/modeldeployments.modeldeploy.io.yaml",
        "charts/modeldeploy/crds/modeldeployments.modeldeploy.io.yaml",
    ],
)
def test_committed_crd_matches_the_models(path):
    assert (ROOT / path).read_text() == render_crd(), f"{path} is stale: {REGENERATE}"


def test_committed_api_reference_matches_the_models():
    assert (ROOT / "docs/api.md").read_text() == render_docs(), (
        f"docs/api.md is stale: {REGENERATE}"
    )


def _nodes(node: dict[str, Any], path: str = ""):
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural():
    """What the API server would otherwise refuse: untyped nodes, refs, unions, closed objects."""
    for path, node in _nodes(openapi_schema()):
        assert "$ref" not in node, path
        assert "title" not in node, path
        assert node.get("additionalProperties") is not False, path
        special = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        assert "type" in node or special, f"{path} has no type"
        assert "anyOf" not in node or node.get("x-kubernetes-int-or-string"), path
        assert not ("properties" in node and isinstance(node.get("additionalProperties"), dict)), (
            path
        )


def test_every_spec_field_is_documented():
    spec = openapi_schema()["properties"]["spec"]
    fields = [(p, n) for p, n in _nodes(spec) if p and not p.endswith(("[]", "{}"))]
    missing = [p for p, node in fields if not node.get("description")]
    assert missing == []


def test_cel_rules_that_compare_strings_have_bounded_inputs():
    """CEL cost is estimated from maxLength/maxItems; unbounded inputs make the CRD unappliable."""
    for path, node in _nodes(openapi_schema()):
        if node.get("x-kubernetes-validations") and node.get("type") == "string":
            assert "maxLength" in node, path
        if node.get("type") == "array":
            assert "maxItems" in node, path


def _apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Structural defaulting as the API server does it: fill absent fields, then recurse."""
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for name, sub in schema["properties"].items():
            if name not in out and "default" in sub:
                out[name] = sub["default"]
            if name in out:
                out[name] = _apply_defaults(out[name], sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_apply_defaults(v, schema["items"]) for v in value]
    return value


def test_crd_defaults_equal_the_models_defaults():
    """A minimal spec defaulted by the CRD equals what the operator's models fill in."""
    minimal = {"model": {"uri": "https://models.example/m.onnx"}}
    spec_schema = openapi_schema()["properties"]["spec"]
    by_crd = _apply_defaults(minimal, spec_schema)
    by_models = ModelDeploymentSpec.model_validate(minimal).to_wire()
    assert by_crd == by_models


def test_names_and_columns():
    crd = build_crd()
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["md", "mdep"]
    assert crd["spec"]["scope"] == "Namespaced"
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Version", "Phase", "Weight", "Ready", "Age"]
    assert yaml.safe_load(render_crd()) == crd
