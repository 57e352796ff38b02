"""The prometheus provider's pure half: the PromQL it sends and how it reads the answers."""

from __future__ import annotations

import math

import pytest

from modeldeploy.api.spec import MetricCheck
from modeldeploy.core.analysis import RevisionMetrics, Verdict, judge_statistical
from modeldeploy.core.analysis.promql import (
    QueryError,
    Target,
    builtin_query,
    custom_query,
    scalar_result,
    vector_result,
    window_from_results,
    window_queries,
)

TARGET = Target("ml", "fraud-a41e02", "30s")


def vector(*samples: tuple[dict[str, str], str]) -> dict:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": m, "value": [1700000000.5, v]} for m, v in samples],
        },
    }


def test_selector_names_namespace_and_revision_with_configurable_labels():
    relabeled = Target("ml", "r1", "1m", revision_label="pod_label_modeldeploy_io_revision")
    assert relabeled.selector() == '{namespace="ml", pod_label_modeldeploy_io_revision="r1"}'


def test_label_values_are_escaped():
    hostile = Target('a"b', "r\\1", "30s")
    assert hostile.selector() == '{namespace="a\\"b", revision="r\\\\1"}'


def test_builtin_queries():
    assert builtin_query("error-rate", TARGET) == (
        '(sum(increase(modelserve_requests_total{namespace="ml", revision="fraud-a41e02", '
        'code=~"5..|429"}[30s])) or vector(0)) / '
        'sum(increase(modelserve_requests_total{namespace="ml", revision="fraud-a41e02"}[30s]))'
    )
    assert builtin_query("request-rate", TARGET) == (
        'sum(rate(modelserve_requests_total{namespace="ml", revision="fraud-a41e02"}[30s]))'
    )
    assert builtin_query("latency-p95", TARGET).startswith("histogram_quantile(0.95, sum by (le)")
    assert builtin_query("latency-p95", TARGET).endswith(" * 1000")
    with pytest.raises(ValueError, match="not a built-in metric"):
        builtin_query("gpu", TARGET)


def test_window_queries():
    q = window_queries(TARGET)
    assert q.buckets == (
        "sum by (le) (increase(modelserve_request_duration_seconds_bucket"
        '{namespace="ml", revision="fraud-a41e02"}[30s]))'
    )
    assert q.latency_sum.startswith("sum(increase(modelserve_request_duration_seconds_sum{")


def test_custom_query_substitution():
    template = 'sum(rate(x{namespace="{{namespace}}",pod=~"{{revision}}-.*"}[{{ interval }}]))'
    assert custom_query(template, TARGET) == (
        'sum(rate(x{namespace="ml",pod=~"fraud-a41e02-.*"}[30s]))'
    )
    with pytest.raises(QueryError, match=r"unknown placeholder \{\{pod\}\}"):
        custom_query("x{pod='{{pod}}'}", TARGET)


def test_scalar_results():
    assert scalar_result(vector(({}, "0.25"))) == 0.25
    assert scalar_result(vector()) is None
    assert scalar_result(vector(({}, "NaN"))) is None
    assert scalar_result(vector(({}, "+Inf"))) == math.inf
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}}
    assert scalar_result(scalar) == 3.0


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"status": "error", "errorType": "bad_data", "error": "parse error"}, "bad_data"),
        ({"status": "success"}, "no data.result"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "instant vector"),
        (vector(({"a": "1"}, "1"), ({"a": "2"}, "2")), "2 series"),
        (vector(({}, "abc")), "not a number"),
    ],
)
def test_unusable_answers_raise_query_errors(answer, message):
    with pytest.raises(QueryError, match=message):
        scalar_result(answer)


def test_vector_rows_keep_labels():
    assert vector_result(vector(({"code": "200"}, "5"))) == [({"code": "200"}, 5.0)]


def test_window_from_prometheus_answers_feeds_the_same_judges():
    requests = vector(({"code": "200"}, "990.4"), ({"code": "500"}, "52.1"))
    buckets = vector(
        ({"le": "0.01"}, "100"),
        ({"le": "0.05"}, "900"),
        ({"le": "0.1"}, "1040"),
        ({"le": "+Inf"}, "1042.5"),
    )
    w = window_from_results(30.0, requests, buckets, vector(({}, "31.2")))
    assert w.bounds == (0.01, 0.05, 0.1, math.inf)
    assert w.counts == pytest.approx((100, 800, 140, 2.5))
    assert w.total == pytest.approx(1042.5)
    assert w.latency_sum == 31.2
    stable = window_from_results(30.0, vector(({"code": "200"}, "5000")), buckets, vector())
    outcome = judge_statistical(
        [MetricCheck(name="error-rate", max=0.2)],
        RevisionMetrics(w),
        RevisionMetrics(stable),
        min_requests=100,
        confidence=0.95,
    )
    assert outcome.verdict is Verdict.FAILED


def test_empty_prometheus_answers_are_an_empty_window():
    w = window_from_results(30.0, vector(), vector(), vector())
    assert w.total == 0
    assert RevisionMetrics(w).requests == 0
