"""The judges: threshold and statistical, on simulated traffic with realistic volumes.

Traffic is simulated per request with a seeded random.Random: log-normal latencies put into
modelserve's buckets, errors drawn one by one, so the tests see the discreteness and ties that
real histograms have.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime
from statistics import NormalDist

import pytest
from hypothesis import given
from hypothesis import strategies as st

from latency_buckets import LATENCY_BUCKETS
from modeldeploy.api.spec import Analysis, MetricCheck
from modeldeploy.api.status import AnalysisCheck
from modeldeploy.core.analysis import (
    CheckOutcome,
    MetricOutcome,
    RevisionMetrics,
    Tolerances,
    Verdict,
    Window,
    combine,
    judge_statistical,
    judge_threshold,
    run_check,
)
from modeldeploy.core.analysis.builtin import errors
from modeldeploy.core.analysis.statistical import rank_test
from modeldeploy.core.analysis.stats import proportion_greater

BOUNDS = (*LATENCY_BUCKETS, math.inf)
INTERVAL = 30.0
ALL_METRICS = [
    MetricCheck(name="error-rate", max=0.1),
    MetricCheck(name="latency-p50", max=2000),
    MetricCheck(name="latency-p95", max=5000),
    MetricCheck(name="latency-p99", max=8000),
    MetricCheck(name="request-rate", min=1),
]


def simulate(
    rng: random.Random, n: int, *, error_rate: float, median_ms: float = 20, sigma: float = 0.5
) -> RevisionMetrics:
    """n requests: log-normal latency (median, sigma of its log), each an error with error_rate."""
    dist = NormalDist(math.log(median_ms / 1000), sigma)
    cumulative = [1.0 if b == math.inf else dist.cdf(math.log(b)) for b in BOUNDS]
    hits = Counter(rng.choices(range(len(BOUNDS)), cum_weights=cumulative, k=n))
    failed = sum(rng.random() < error_rate for _ in range(n))
    codes = {"200": float(n - failed), "500": float(failed)}
    counts = tuple(float(hits.get(i, 0)) for i in range(len(BOUNDS)))
    return RevisionMetrics(Window(INTERVAL, codes, BOUNDS, counts))


def statistical(canary, stable, *, metrics=ALL_METRICS, min_requests=200, **kw) -> CheckOutcome:
    return judge_statistical(
        metrics, canary, stable, min_requests=min_requests, confidence=0.95, **kw
    )


def by_metric(outcome: CheckOutcome) -> dict[str, MetricOutcome]:
    return {r.metric: r for r in outcome.results}


# --- false positives -----------------------------------------------------------------------

RUNS = 500
ALPHA = 0.05


@pytest.fixture(scope="module")
def identical_runs():
    """RUNS intervals where canary and stable are the same service (2 % errors, 20 ms median)."""
    runs = []
    for seed in range(RUNS):
        rng = random.Random(seed)
        runs.append((simulate(rng, 500, error_rate=0.02), simulate(rng, 2000, error_rate=0.02)))
    return runs


def test_identical_revisions_pass_at_the_stated_false_positive_rate(identical_runs):
    """`confidence: 0.95` means identical revisions pass a check at least 95 % of the time."""
    failed = sum(statistical(c, s).verdict is Verdict.FAILED for c, s in identical_runs)
    assert failed / RUNS <= ALPHA  # measured: 10 of 500 (2 %)


def test_the_tests_alone_are_calibrated(identical_runs):
    """Each test alone, at alpha, rejects about alpha of identical runs: not more (false
    alarms), and not far less (a test that never rejects has no power)."""
    error_rejects = latency_rejects = 0
    for canary, stable in identical_runs:
        c, s = canary.window, stable.window
        assert c is not None
        assert s is not None
        error_rejects += proportion_greater(errors(c), c.total, errors(s), s.total) < ALPHA
        latency_rejects += rank_test(c, s).p_value < ALPHA
    # measured: 23 and 32 of 500; binomial sd at alpha 5 % is 1 %
    for rejects in (error_rejects, latency_rejects):
        assert ALPHA / 3 <= rejects / RUNS <= ALPHA + 0.025, rejects


def test_without_tolerances_the_check_still_holds_its_confidence(identical_runs):
    """Alpha is split over the two tests (Bonferroni), so even with no effect-size tolerance a
    check fails identical revisions about alpha of the time, not twice that."""
    none = Tolerances(error_rate_absolute=0, error_rate_relative=0, latency_superiority=0.5)
    failed = sum(
        statistical(c, s, tolerances=none).verdict is Verdict.FAILED for c, s in identical_runs
    )
    assert failed / RUNS <= ALPHA + 0.025  # measured: 27 of 500


# --- true positives ------------------------------------------------------------------------


def test_five_percent_errors_against_one_in_a_thousand_fails():
    rng = random.Random(1)
    canary = simulate(rng, 1000, error_rate=0.05)
    stable = simulate(rng, 9000, error_rate=0.001)
    outcome = statistical(canary, stable)
    error = by_metric(outcome)["error-rate"]
    assert outcome.verdict is Verdict.FAILED
    assert error.verdict is Verdict.FAILED
    assert error.p_value is not None
    assert error.p_value < 1e-10
    assert error.canary_value == pytest.approx(0.05, abs=0.015)
    assert error.stable_value == pytest.approx(0.001, abs=0.001)
    assert "worse than stable" in error.reason
    assert [r.metric for r in outcome.failed()] == ["error-rate"]


def test_canary_thirty_percent_slower_fails_on_latency():
    rng = random.Random(2)
    canary = simulate(rng, 1000, error_rate=0.001, median_ms=26)
    stable = simulate(rng, 9000, error_rate=0.001, median_ms=20)
    results = by_metric(statistical(canary, stable))
    for name in ("latency-p50", "latency-p95", "latency-p99"):
        assert results[name].verdict is Verdict.FAILED, results[name].reason
        assert results[name].canary_value > results[name].stable_value
        assert results[name].p_value < 1e-6
    assert results["error-rate"].verdict is Verdict.PASSED


def test_slightly_slower_at_high_volume_is_within_tolerance():
    """3 % slower on 200k requests is significant, but not worth a rollback."""
    rng = random.Random(3)
    canary = simulate(rng, 50_000, error_rate=0.0, median_ms=20.6)
    stable = simulate(rng, 150_000, error_rate=0.0, median_ms=20)
    assert canary.window is not None
    assert stable.window is not None
    assert rank_test(canary.window, stable.window).p_value < ALPHA
    assert statistical(canary, stable).verdict is Verdict.PASSED


def test_small_error_excess_within_tolerance_passes():
    canary = RevisionMetrics(Window(INTERVAL, {"200": 98_800, "500": 1200}))  # 1.2 %
    stable = RevisionMetrics(Window(INTERVAL, {"200": 99_000, "500": 1000}))  # 1.0 %
    metrics = [MetricCheck(name="error-rate", max=0.05)]
    result = statistical(canary, stable, metrics=metrics).results[0]
    assert result.p_value < ALPHA  # significant, yet within 25 % of stable's rate
    assert result.verdict is Verdict.PASSED


# --- no data, guard rails, comparisons that cannot happen ------------------------------------


def test_too_little_data_is_inconclusive_never_failed():
    rng = random.Random(4)
    canary = simulate(rng, 150, error_rate=0.5, median_ms=900)  # terrible, but only 150 requests
    stable = simulate(rng, 9000, error_rate=0.001)
    for outcome in (
        statistical(canary, stable),
        judge_threshold(ALL_METRICS, canary, min_requests=200),
    ):
        assert outcome.verdict is Verdict.INCONCLUSIVE
        assert {r.verdict for r in outcome.results} == {Verdict.INCONCLUSIVE}
        assert all(r.requests == 150 for r in outcome.results)
        assert "150 requests < minRequests 200" in outcome.summary()


def test_nothing_scraped_is_inconclusive():
    for outcome in (
        statistical(RevisionMetrics(), None),
        judge_threshold(ALL_METRICS, RevisionMetrics(), min_requests=1),
    ):
        assert outcome.verdict is Verdict.INCONCLUSIVE


def test_guard_rails_fail_even_when_stable_is_as_bad():
    rng = random.Random(5)
    canary = simulate(rng, 1000, error_rate=0.2)
    stable = simulate(rng, 3000, error_rate=0.2)
    result = by_metric(statistical(canary, stable))["error-rate"]
    assert result.verdict is Verdict.FAILED
    assert "> max 0.1" in result.reason
    assert result.limit == "max 0.1"


def test_quiet_stable_falls_back_to_the_limits():
    rng = random.Random(6)
    canary = simulate(rng, 1000, error_rate=0.001)
    stable = simulate(rng, 20, error_rate=0.0)
    results = by_metric(statistical(canary, stable))
    assert all(r.verdict is Verdict.PASSED for r in results.values())
    assert results["error-rate"].p_value is None
    assert results["error-rate"].stable_value is None
    assert "stable too quiet to compare" in results["error-rate"].reason


def test_request_rate_and_custom_metrics_are_judged_by_limits():
    rng = random.Random(7)
    canary = simulate(rng, 600, error_rate=0.0)  # 20 req/s
    canary = RevisionMetrics(canary.window, {"gpu-util": 0.97, "empty": float("nan")})
    stable = RevisionMetrics(simulate(rng, 6000, error_rate=0.0).window, {"gpu-util": 0.5})
    metrics = [
        MetricCheck(name="request-rate", min=25),
        MetricCheck(name="gpu-util", max=0.9, query="avg(gpu{pod=~'{{revision}}.*'})"),
        MetricCheck(name="empty", max=1, query="x"),
    ]
    for outcome in (statistical(canary, stable, metrics=metrics),
                    judge_threshold(metrics, canary, min_requests=200)):  # fmt: skip
        results = by_metric(outcome)
        assert results["request-rate"].verdict is Verdict.FAILED
        assert results["request-rate"].reason == "request-rate 20/s < min 25/s"
        assert results["gpu-util"].verdict is Verdict.FAILED
        assert results["empty"].verdict is Verdict.INCONCLUSIVE
        assert results["empty"].reason == "empty: no data"
    assert by_metric(statistical(canary, stable, metrics=metrics))["gpu-util"].stable_value == 0.5


def test_different_bucket_layouts_are_compared_on_shared_bounds():
    canary = RevisionMetrics(
        Window(30, {"200": 400}, bounds=(0.01, 0.02, 0.05, math.inf), counts=(0, 100, 300, 0))
    )
    stable = RevisionMetrics(
        Window(30, {"200": 400}, bounds=(0.01, 0.05, math.inf), counts=(300, 100, 0))
    )
    result = by_metric(statistical(canary, stable))["latency-p50"]
    assert result.verdict is Verdict.FAILED
    assert result.p_value < 1e-10


def test_threshold_judge_limits_are_inclusive():
    canary = RevisionMetrics(Window(30, {"200": 990, "500": 10}))
    ok = judge_threshold([MetricCheck(name="error-rate", max=0.01)], canary, min_requests=100)
    assert ok.verdict is Verdict.PASSED
    assert ok.results[0].canary_value == 0.01


# --- the entry point and the status record ---------------------------------------------------


def test_run_check_picks_the_judge_from_the_spec():
    rng = random.Random(8)
    canary = simulate(rng, 1000, error_rate=0.03)
    stable = simulate(rng, 9000, error_rate=0.001)
    threshold = Analysis(metrics=[MetricCheck(name="error-rate", max=0.05)], min_requests=200)
    assert run_check(threshold, canary, stable).verdict is Verdict.PASSED
    judged = run_check(threshold.model_copy(update={"judge": "statistical"}), canary, stable)
    assert judged.verdict is Verdict.FAILED


def test_outcome_converts_to_the_status_models():
    rng = random.Random(9)
    outcome = statistical(simulate(rng, 1000, error_rate=0.05), simulate(rng, 9000, error_rate=0))
    now = datetime(2025, 1, 1, tzinfo=UTC)
    check = outcome.to_status(time=now, step=1)
    assert isinstance(check, AnalysisCheck)
    wire = check.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert wire["verdict"] == "Failed"
    first = wire["results"][0]
    assert first["metric"] == "error-rate"
    assert set(first) >= {"canaryValue", "stableValue", "limit", "pValue", "requests"}
    assert AnalysisCheck.model_validate(wire) == check


def test_non_finite_values_never_reach_the_status():
    result = MetricOutcome(
        metric="x", verdict=Verdict.FAILED, reason="", canary_value=math.inf, p_value=1.0000001
    )
    status = result.to_status()
    assert status.canary_value is None
    assert status.p_value == 1.0


@given(st.lists(st.sampled_from(list(Verdict)), max_size=8))
def test_check_verdict_combines_metric_verdicts(verdicts):
    combined = combine(verdicts)
    if Verdict.FAILED in verdicts:
        assert combined is Verdict.FAILED
    elif Verdict.INCONCLUSIVE in verdicts or not verdicts:
        assert combined is Verdict.INCONCLUSIVE
    else:
        assert combined is Verdict.PASSED
    assert combine(reversed(verdicts)) is combined
    outcome = CheckOutcome(
        tuple(MetricOutcome(metric=f"m{i}", verdict=v, reason="") for i, v in enumerate(verdicts))
    )
    assert outcome.verdict is combined


@given(
    st.integers(0, 3000),
    st.integers(0, 3000),
    st.floats(0, 1),
    st.floats(0, 1),
    st.integers(0, 500),
)
def test_below_min_requests_never_fails(n1, n2, e1, e2, min_requests):
    canary = RevisionMetrics(Window(30, {"200": n1 * (1 - e1), "500": n1 * e1}))
    stable = RevisionMetrics(Window(30, {"200": n2 * (1 - e2), "500": n2 * e2}))
    outcome = statistical(canary, stable, min_requests=min_requests)
    if n1 < min_requests:
        assert outcome.verdict is Verdict.INCONCLUSIVE
    assert all(0 <= (r.p_value or 0) <= 1 for r in outcome.results)
