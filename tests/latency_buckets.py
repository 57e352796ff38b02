"""modelserve.metrics.LATENCY_BUCKETS, copied once for the operator's analysis tests.

The operator's tests must run without the serving extras installed, so they cannot import the
serving image's module; test_analysis_window.test_buckets_match_modelserve keeps this copy honest.
"""

from __future__ import annotations

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0065, 0.008,
    0.01, 0.013, 0.016, 0.02, 0.025, 0.032, 0.04, 0.05, 0.065, 0.08,
    0.1, 0.13, 0.16, 0.2, 0.25, 0.32, 0.4, 0.5, 0.65, 0.8,
    1.0, 1.3, 1.6, 2.0, 2.5, 3.2, 4.0, 5.0, 6.5, 8.0, 10.0,
)  # fmt: skip
