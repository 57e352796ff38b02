"""Scrapes to interval windows: parsing real exposition text, per-pod deltas, restarts, pods
that come and go."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from latency_buckets import LATENCY_BUCKETS
from modeldeploy.core.analysis import (
    PodSample,
    RevisionSample,
    Window,
    parse_exposition,
    window_between,
)
from modeldeploy.core.analysis.samples import REQUESTS_TOTAL, label_set
from modeldeploy.core.analysis.window import common_bounds, pod_delta, restarted


class FakePod:
    """A serving process's metrics, written by prometheus-client exactly as modelserve does."""

    def __init__(self, model: str = "fraud", version: str = "v7") -> None:
        self.registry = CollectorRegistry()
        self.labels = (model, version)
        self.requests = Counter(
            "modelserve_requests",
            "requests",
            ["model", "version", "protocol", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelserve_request_duration_seconds",
            "latency",
            ["model", "version", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def serve(self, code: int, seconds: float, protocol: str = "rest", times: int = 1) -> None:
        for _ in range(times):
            self.requests.labels(*self.labels, protocol, str(code)).inc()
            self.latency.labels(*self.labels, protocol).observe(seconds)

    def scrape(self) -> PodSample:
        return PodSample.parse(generate_latest(self.registry).decode())


def test_buckets_match_modelserve():
    metrics = pytest.importorskip("modelserve.metrics")
    assert metrics.LATENCY_BUCKETS == LATENCY_BUCKETS


def test_parse_reads_every_sample_of_real_exposition():
    pod = FakePod()
    pod.serve(200, 0.003, times=3)
    pod.serve(500, 0.2)
    series = parse_exposition(generate_latest(pod.registry).decode())
    labels = {"code": "200", "model": "fraud", "protocol": "rest", "version": "v7"}
    assert series[(REQUESTS_TOTAL, label_set(labels))] == 3.0
    inf_bucket = label_set({"le": "+Inf", "model": "fraud", "protocol": "rest", "version": "v7"})
    assert series[("modelserve_request_duration_seconds_bucket", inf_bucket)] == 4.0
    assert any(name == "modelserve_requests_created" for name, _ in series)


def test_pod_sample_keeps_only_what_analysis_reads():
    text = generate_latest(FakePod().registry).decode() + "other_gauge 3\n"
    sample = PodSample.parse(text + 'modelserve_requests_total{code="200"} 1\n')
    assert {name for name, _ in sample.series} == {REQUESTS_TOTAL}


def test_unreadable_text_is_a_value_error():
    with pytest.raises(ValueError, match="not Prometheus text exposition"):
        parse_exposition("this is { not metrics")


def test_pod_sample_survives_json():
    pod = FakePod()
    pod.serve(200, 0.01, times=2)
    sample = pod.scrape()
    assert PodSample.from_json(sample.to_json()) == sample
    with pytest.raises(ValueError, match="not a \\[name, labels, value\\] row"):
        PodSample.from_json([["x", "not labels", 1]])


def test_window_of_two_scrapes_of_real_pods():
    a, b = FakePod(), FakePod()
    a.serve(200, 0.001, times=5)
    first = RevisionSample(100.0, {"a": a.scrape(), "b": b.scrape()})
    a.serve(200, 0.003, times=10)
    a.serve(500, 0.3, times=2)
    b.serve(200, 0.003, times=7, protocol="grpc")
    b.serve(429, 0.0001)
    w = window_between(first, RevisionSample(130.0, {"a": a.scrape(), "b": b.scrape()}))
    assert w.seconds == 30.0
    assert w.pods == 2
    assert dict(w.requests) == {"200": 17.0, "500": 2.0, "429": 1.0}
    assert w.observations == 20.0
    assert w.counts[w.bounds.index(0.0005)] == 1.0  # the 0.1 ms request
    assert w.counts[w.bounds.index(0.003)] == 17.0  # (2.5, 3.0] ms: bounds are inclusive
    assert w.counts[w.bounds.index(0.32)] == 2.0
    assert w.latency_sum == pytest.approx(17 * 0.003 + 0.6 + 0.0001)


def test_restarted_pod_counts_its_whole_new_value():
    old = FakePod()
    old.serve(200, 0.01, times=50)
    first = RevisionSample(0.0, {"a": old.scrape()})
    new = FakePod()  # the container restarted: counters begin again
    new.serve(200, 0.01, times=8)
    w = window_between(first, RevisionSample(30.0, {"a": new.scrape()}))
    assert dict(w.requests) == {"200": 8.0}


def test_restart_caught_by_created_timestamp_even_when_counters_grew_past():
    key = (REQUESTS_TOTAL, label_set({"code": "200"}))
    created = ("modelserve_requests_created", label_set({"code": "200"}))
    before = PodSample({key: 5.0, created: 1000.0})
    after = PodSample({key: 9.0, created: 1020.0})
    assert restarted(before, after)
    assert pod_delta(before, after) == {key: 9.0}
    same = PodSample({key: 9.0, created: 1000.0})
    assert not restarted(before, same)
    assert pod_delta(before, same) == {key: 4.0}


def test_new_pod_counts_from_its_second_scrape_and_gone_pod_not_at_all():
    a, newcomer, leaver = FakePod(), FakePod(), FakePod()
    leaver.serve(200, 0.01, times=100)
    first = RevisionSample(0.0, {"a": a.scrape(), "leaver": leaver.scrape()})
    a.serve(200, 0.01, times=3)
    newcomer.serve(200, 0.01, times=40)
    second = RevisionSample(30.0, {"a": a.scrape(), "new": newcomer.scrape()})
    w = window_between(first, second)
    assert dict(w.requests) == {"200": 3.0}
    assert w.pods == 1
    newcomer.serve(500, 0.01, times=2)
    w2 = window_between(second, RevisionSample(60.0, {"a": a.scrape(), "new": newcomer.scrape()}))
    assert dict(w2.requests) == {"200": 0.0, "500": 2.0}


def test_no_pods_is_an_empty_window_and_time_must_move_forward():
    w = window_between(RevisionSample(0.0), RevisionSample(30.0))
    assert w.total == 0
    assert w.observations == 0
    assert w.bounds == (math.inf,)
    with pytest.raises(ValueError, match="must come after"):
        window_between(RevisionSample(30.0), RevisionSample(30.0))


def test_window_rejects_malformed_histograms():
    with pytest.raises(ValueError, match="must increase"):
        Window(1, bounds=(0.1, 0.1, math.inf), counts=(1, 1, 1))
    with pytest.raises(ValueError, match="must be \\+Inf"):
        Window(1, bounds=(0.1,), counts=(1,))
    with pytest.raises(ValueError, match="one count per bucket"):
        Window(1, bounds=(0.1, math.inf), counts=(1,))


def test_from_cumulative_lifts_dips_and_adds_inf():
    w = Window.from_cumulative(30, {}, {0.1: 5, 0.2: 4.9, 0.3: 8})
    assert w.bounds == (0.1, 0.2, 0.3, math.inf)
    assert w.counts == (5.0, 0.0, 3.0, 0.0)


def test_rebucket_onto_shared_bounds_keeps_totals():
    a = Window(1, bounds=(0.1, 0.2, 0.3, math.inf), counts=(1, 2, 3, 4))
    b = Window(1, bounds=(0.2, 0.25, 0.3, math.inf), counts=(5, 1, 1, 1))
    shared = common_bounds(a, b)
    assert shared == (0.2, 0.3, math.inf)
    assert a.rebucket(shared).counts == (3.0, 3.0, 4.0)
    assert b.rebucket(shared).counts == (5.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="cannot split"):
        a.rebucket([0.15])


# --- properties ----------------------------------------------------------------------------

codes = st.sampled_from(["200", "400", "429", "500", "503"])
bucket_index = st.integers(min_value=0, max_value=len(LATENCY_BUCKETS))
requests_batch = st.lists(st.tuples(codes, bucket_index), max_size=30)
# Each event: serve a batch on a pod, or restart that pod (its counters start over).
events = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.one_of(st.just("restart"), requests_batch)),
    max_size=12,
)


def _pod_sample(served: list[tuple[str, int]], started: float) -> PodSample:
    """What a pod that served these requests since it started would write (with `_created`
    timestamps, as prometheus-client writes them)."""
    series: dict = {}
    base = {"model": "m", "protocol": "rest", "version": "v"}
    if served:
        series[("modelserve_request_duration_seconds_created", label_set(base))] = started
    for code, _ in served:
        series[("modelserve_requests_created", label_set({**base, "code": code}))] = started
        key = (REQUESTS_TOTAL, label_set({**base, "code": code}))
        series[key] = series.get(key, 0.0) + 1
    bounds = [*LATENCY_BUCKETS, math.inf]
    if served:
        for le in bounds:
            text = "+Inf" if le == math.inf else repr(le)
            key = ("modelserve_request_duration_seconds_bucket", label_set({**base, "le": text}))
            series[key] = float(sum(bounds[i] <= le for _, i in served))
    return PodSample(series)


@given(events, events)
def test_window_deltas_are_never_negative_and_never_exceed_what_was_served(first, second):
    served: dict[str, list[tuple[str, int]]] = {}
    started: dict[str, float] = {}

    def play(evts, log):
        for pod, action in evts:
            if action == "restart":
                served[pod] = []
                started[pod] = started.get(pod, 0.0) + 1
            else:
                served.setdefault(pod, []).extend(action)
                log.extend(action)

    play(first, [])
    before = RevisionSample(
        0.0, {p: _pod_sample(s, started.get(p, 0.0)) for p, s in served.items()}
    )
    during: list[tuple[str, int]] = []
    play(second, during)
    after = RevisionSample(
        30.0, {p: _pod_sample(s, started.get(p, 0.0)) for p, s in served.items()}
    )
    w = window_between(before, after)
    assert all(v >= 0 for v in w.requests.values())
    assert all(c >= 0 for c in w.counts)
    assert w.total <= len(during)
    assert w.observations == w.total
    if not any(action == "restart" for _, action in second) and set(after.pods) == set(before.pods):
        assert w.total == len(during)


def test_window_from_the_real_modelserve_exporter():
    metrics = pytest.importorskip("modelserve.metrics")
    server = metrics.Metrics(model="fraud", version="v7")
    server.observe_request("rest", 200, 0.004)
    first = RevisionSample(0.0, {"p": PodSample.parse(server.exposition().decode())})
    for code, seconds in [(200, 0.004), (200, 0.02), (400, 0.001), (500, 1.2)]:
        server.observe_request("rest", code, seconds)
    server.observe_request("grpc", 200, 0.004)
    w = window_between(
        first, RevisionSample(10.0, {"p": PodSample.parse(server.exposition().decode())})
    )
    assert dict(w.requests) == {"200": 3.0, "400": 1.0, "500": 1.0}
    assert w.observations == 5.0
