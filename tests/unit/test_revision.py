"""Revision hashing: stable under key order, sensitive to anything a pod runs, blind to scale."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.core.revision import HASH_LENGTH, serving_template, template_hash
from modeldeploy.core.settings import Settings

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=6), json_values, min_size=1, max_size=6))
def test_hash_ignores_key_order(template):
    reordered = json.loads(json.dumps(dict(reversed(list(template.items())))))
    assert template_hash(template) == template_hash(reordered)


@given(st.dictionaries(st.text(max_size=6), st.integers(), min_size=1, max_size=6), st.data())
def test_hash_changes_when_any_value_changes(template, data):
    key = data.draw(st.sampled_from(sorted(template)))
    changed = {**template, key: template[key] + 1}
    assert template_hash(changed) != template_hash(template)


def test_hash_is_a_short_dns_safe_word():
    h = template_hash({"model": {"uri": "https://x/m.onnx"}})
    assert len(h) == HASH_LENGTH
    assert h.isalnum()
    assert h.islower() or h.isdigit()
    assert not set(h) & set("aeiou")


def _spec(**overrides):
    base = {"model": {"uri": "https://m/v1.onnx", "version": "v1"}, "serving": {"replicas": 2}}
    for path, value in overrides.items():
        node = base
        *parents, last = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return ModelDeploymentSpec.model_validate(base)


def _hash(spec, settings=None):
    return template_hash(serving_template(spec, settings or Settings()))


def test_scaling_and_rollout_settings_do_not_make_a_new_revision():
    base = _hash(_spec())
    assert _hash(_spec(serving__replicas=7)) == base
    assert _hash(_spec(autoscaling={"minReplicas": 1, "maxReplicas": 5})) == base
    assert _hash(_spec(rollout={"strategy": "Immediate"})) == base
    assert _hash(_spec(paused=True)) == base


def test_anything_a_pod_runs_makes_a_new_revision():
    base = _hash(_spec())
    changes = [
        _spec(model__uri="https://m/v2.onnx"),
        _spec(model__version="v2"),
        _spec(model__sha256="a" * 64),
        _spec(serving__image="registry/modelserve:2"),
        _spec(serving__env=[{"name": "A", "value": "1"}]),
        _spec(serving__resources={"limits": {"memory": "1Gi"}}),
        _spec(serving__batching={"maxBatchSize": 8}),
        _spec(serving__threads={"intraOp": 2}),
    ]
    hashes = {_hash(s) for s in changes}
    assert base not in hashes
    assert len(hashes) == len(changes)


def test_a_new_default_image_is_a_new_revision():
    """An operator upgrade rolls the new serving image out like any other revision."""
    assert _hash(_spec(), Settings(serving_image="a:1")) != _hash(
        _spec(), Settings(serving_image="a:2")
    )
