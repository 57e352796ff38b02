"""Built-in metrics and the statistical tests, checked against brute force and known values."""

from __future__ import annotations

import doctest
import importlib
import itertools
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy.core.analysis import Window, builtin_value, error_rate, is_error, latency_quantile
from modeldeploy.core.analysis.stats import (
    fisher_greater,
    normal_sf,
    proportion_greater,
    rank_test_greater,
)

MODULES = ["builtin", "promql", "samples", "statistical", "stats", "threshold", "verdict", "window"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    """The worked examples in the docstrings document the math: keep them true."""
    module = importlib.import_module(f"modeldeploy.core.analysis.{name}")
    result = doctest.testmod(module)
    assert result.failed == 0
    assert result.attempted > 0


# --- built-in metrics ----------------------------------------------------------------------


def test_errors_are_5xx_and_429_not_client_errors():
    w = Window(30, {"200": 900, "201": 10, "400": 50, "404": 20, "413": 10, "429": 5, "500": 4})
    assert error_rate(w) == pytest.approx(9 / 999)
    assert not is_error("499")
    assert is_error("504")
    assert error_rate(Window(30)) is None


def test_quantile_matches_promql_histogram_quantile_cases():
    # Values from Prometheus' own histogram_quantile semantics (promql/quantile.go).
    w = Window(1, bounds=(0.1, 0.2, 0.4, math.inf), counts=(10, 10, 20, 0))
    assert latency_quantile(w, 0.25) == pytest.approx(0.1)  # rank 10: top of bucket 1
    assert latency_quantile(w, 0.375) == pytest.approx(0.15)  # rank 15, half of bucket 2
    assert latency_quantile(w, 0.75) == pytest.approx(0.3)  # rank 30, half of bucket 3
    assert latency_quantile(w, 1.0) == pytest.approx(0.4)
    tail = Window(1, bounds=(0.1, math.inf), counts=(1, 99))
    assert latency_quantile(tail, 0.5) == 0.1  # in +Inf: the highest finite bound
    assert latency_quantile(Window(1), 0.5) is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        latency_quantile(w, 1.5)


def test_builtin_values_use_the_units_of_the_limits():
    w = Window(20, {"200": 100}, bounds=(0.01, 0.02, math.inf), counts=(50, 50, 0))
    assert builtin_value("latency-p50", w) == pytest.approx(10.0)  # milliseconds
    assert builtin_value("latency-p95", w) == pytest.approx(19.0)
    assert builtin_value("request-rate", w) == 5.0
    assert builtin_value("latency-p99", Window(20)) is None
    with pytest.raises(ValueError, match="not a built-in metric"):
        builtin_value("throughput", w)


bounds_strategy = st.lists(
    st.floats(min_value=1e-4, max_value=100, allow_nan=False), min_size=1, max_size=12, unique=True
).map(lambda b: (*sorted(b), math.inf))


@st.composite
def windows(draw):
    bounds = draw(bounds_strategy)
    counts = draw(
        st.lists(
            st.floats(min_value=0, max_value=1e6, allow_nan=False),
            min_size=len(bounds),
            max_size=len(bounds),
        )
    )
    return Window(1, bounds=bounds, counts=tuple(counts))


@given(windows(), st.floats(0, 1), st.floats(0, 1))
def test_quantile_is_monotone_in_q_and_inside_the_histogram(w, q1, q2):
    lo, hi = sorted((q1, q2))
    a, b = latency_quantile(w, lo), latency_quantile(w, hi)
    if w.observations <= 0:
        assert a is None
        assert b is None
        return
    finite = [x for x in w.bounds if x != math.inf]
    assert a is not None
    assert b is not None
    assert a <= b * (1 + 1e-12) + 1e-15
    assert a >= 0
    assert b <= finite[-1]


def test_quantile_stays_inside_its_bucket_when_the_rank_rounds_past_it():
    """Found by the property above: the cumulative count reaches the rank after rounding while
    the rank minus the count below still exceeds the bucket's count by an ulp."""
    w = Window(1, bounds=(1.0, 2.0, math.inf), counts=(43692.0, 21844.82219175432, 0.0))
    top = latency_quantile(w, 1.0)
    assert top is not None
    assert top <= 2.0


# --- the tests -----------------------------------------------------------------------------


def test_normal_sf_known_values():
    assert normal_sf(0) == 0.5
    assert normal_sf(1.959964) == pytest.approx(0.025, abs=1e-6)
    assert normal_sf(-3) == pytest.approx(0.99865, abs=1e-5)


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), [(3, 20, 1, 30), (0, 10, 2, 10), (5, 12, 0, 7)])
def test_fisher_matches_brute_force_enumeration(x1, n1, x2, n2):
    # Enumerate every way to place x1 + x2 errors among n1 + n2 requests.
    total = x1 + x2
    ways = [
        math.comb(n1, k) * math.comb(n2, total - k)
        for k in range(total + 1)
        if k <= n1 and total - k <= n2
    ]
    tail = sum(
        math.comb(n1, k) * math.comb(n2, total - k)
        for k in range(x1, total + 1)
        if k <= n1 and total - k <= n2
    )
    expected = tail / sum(ways) if x1 > 0 else 1.0
    assert fisher_greater(x1, n1, x2, n2) == pytest.approx(expected, rel=1e-9)


def test_proportion_test_is_one_sided_and_handles_degenerate_input():
    assert proportion_greater(50, 1000, 1, 1000) < 1e-10
    assert proportion_greater(1, 1000, 50, 1000) > 0.99  # canary better: no evidence
    assert proportion_greater(0, 1000, 0, 1000) == 1.0
    assert proportion_greater(10, 10, 10, 10) == 1.0
    assert proportion_greater(1, 0, 1, 10) == 1.0


def _brute_force_u(canary, stable):
    """U by comparing every pair of requests (a bucket index stands for each value)."""
    xs = [i for i, c in enumerate(canary) for _ in range(c)]
    ys = [i for i, s in enumerate(stable) for _ in range(s)]
    return sum((x > y) + 0.5 * (x == y) for x, y in itertools.product(xs, ys))


@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=6).flatmap(
        lambda c: st.tuples(
            st.just(c), st.lists(st.integers(0, 6), min_size=len(c), max_size=len(c))
        )
    )
)
def test_rank_test_u_equals_pairwise_count(histograms):
    canary, stable = histograms
    result = rank_test_greater(canary, stable)
    if sum(canary) and sum(stable):
        assert result.u == pytest.approx(_brute_force_u(canary, stable))
        assert result.superiority == pytest.approx(result.u / (sum(canary) * sum(stable)))
    assert 0 <= result.p_value <= 1


def test_rank_test_tie_variance_matches_a_permutation_test():
    # Exact one-sided permutation p-value of U for a small tied sample, against the normal
    # approximation with tie correction: close, which the tie correction is for.
    canary, stable = (1, 3, 4, 2), (4, 4, 2, 0)
    values = [i for i, c in enumerate(canary) for _ in range(c)] + [
        i for i, s in enumerate(stable) for _ in range(s)
    ]
    n1 = sum(canary)
    observed = _brute_force_u(canary, stable)
    rng = random.Random(7)
    trials, extreme = 4000, 0
    for _ in range(trials):
        rng.shuffle(values)
        c = [values[:n1].count(i) for i in range(4)]
        s = [values[n1:].count(i) for i in range(4)]
        extreme += _brute_force_u(c, s) >= observed
    approx = rank_test_greater(canary, stable).p_value
    assert approx == pytest.approx(extreme / trials, abs=0.02)


def test_rank_test_sees_no_evidence_without_spread():
    assert rank_test_greater((0, 10, 0), (0, 50, 0)).p_value == 1.0
    assert rank_test_greater((0, 0), (1, 1)).p_value == 1.0
    with pytest.raises(ValueError, match="same buckets"):
        rank_test_greater((1,), (1, 2))
