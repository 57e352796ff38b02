"""Prometheus metrics of the operator itself (not of the models: those come from modelserve)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

RECONCILES: Final = Counter(
    "modeldeploy_reconciles_total", "Reconciles of ModelDeployments, by result.", ["result"]
)
RECONCILE_SECONDS: Final = Histogram(
    "modeldeploy_reconcile_duration_seconds",
    "Time to observe, decide and act for one ModelDeployment.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_WRITES: Final = Counter(
    "modeldeploy_api_writes_total", "Writes sent to the API server.", ["verb", "kind"]
)
API_READS: Final = Counter(
    "modeldeploy_api_reads_total",
    "Reads sent to the API server outside the watch streams (reference checks).",
    ["kind"],
)
MANAGED: Final = Gauge(
    "modeldeploy_managed_objects", "Objects the operator currently manages, by kind.", ["kind"]
)
