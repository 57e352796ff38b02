"""The drift check that decides whether a child needs writing."""

from __future__ import annotations

import pytest

from modeldeploy.core.diff import is_subset, quantity


@pytest.mark.parametrize(
    ("a", "b"), [("500m", "0.5"), ("1Gi", "1073741824"), ("2", 2), ("1k", "1000")]
)
def test_equal_quantities(a, b):
    assert quantity(str(a)) == quantity(str(b))


def test_defaults_added_by_the_server_are_not_drift():
    desired = {"spec": {"ports": [{"name": "http", "port": 80}]}}
    live = {
        "spec": {
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "clusterIP": "10.0.0.1",
        }
    }
    assert is_subset(desired, live)


def test_a_changed_or_missing_field_is_drift():
    desired = {"spec": {"image": "a:1", "replicas": 2}}
    assert not is_subset(desired, {"spec": {"image": "evil:1", "replicas": 2}})
    assert not is_subset(desired, {"spec": {"image": "a:1"}})
    assert not is_subset({"args": ["a", "b"]}, {"args": ["b", "a"]})


def test_entries_someone_else_added_to_a_named_list_are_theirs():
    desired = {"env": [{"name": "A", "value": "1"}]}
    assert is_subset(desired, {"env": [{"name": "A", "value": "1"}, {"name": "FOO", "value": "x"}]})
    assert not is_subset(desired, {"env": [{"name": "A", "value": "2"}]})
    assert not is_subset(desired, {"env": [{"name": "B", "value": "1"}]})
