"""Prometheus metrics of the operator itself (not of the models: those come from modelserve)."""

from __future__ import annotations

import contextlib
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from modeldeploy.api.status import ModelDeploymentStatus

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
APPLY_FAILURES: Final = Counter(
    "modeldeploy_apply_failures_total",
    "Writes the API server refused (a child's apply or delete, or a status), by kind; each "
    "makes the object Degraded and its next reconcile wait a backoff.",
    ["kind"],
)
BACKING_OFF: Final = Gauge(
    "modeldeploy_backing_off_objects",
    "ModelDeployments waiting a backoff after failed reconciles.",
)
STATUS_CONFLICTS: Final = Counter(
    "modeldeploy_status_conflicts_total",
    "Status writes the API server refused because the ModelDeployment changed since the read "
    "the decision was based on (409); each is decided again at once, never reported Degraded.",
)
LEADER: Final = Gauge(
    "modeldeploy_leader",
    "1 while this replica holds the leader Lease and may write, else 0 (a standby).",
)
LEADER_CHANGES: Final = Counter(
    "modeldeploy_leader_changes_total",
    "Times this replica started or stopped leading, by what happened.",
    ["change"],
)
LEASE_WRITES: Final = Counter(
    "modeldeploy_lease_writes_total",
    "Writes of the leader Lease (creating, taking over, renewing, releasing it); not counted "
    "in modeldeploy_api_writes_total, which counts writes of managed objects.",
    ["verb"],
)
MANAGED: Final = Gauge(
    "modeldeploy_managed_objects", "Objects the operator currently manages, by kind.", ["kind"]
)

# Per ModelDeployment: what a rollout dashboard and alert rules read.
_MD = ["namespace", "name"]
CANARY_WEIGHT: Final = Gauge(
    "modeldeploy_rollout_canary_weight_percent", "Traffic weight of the new revision.", _MD
)
ROLLOUT_STEP: Final = Gauge(
    "modeldeploy_rollout_step", "Index of the canary step in progress (-1: none).", _MD
)
PHASE: Final = Gauge(
    "modeldeploy_phase", "1 for the ModelDeployment's current phase, 0 for the others.",
    [*_MD, "phase"],
)  # fmt: skip
CHECKS: Final = Counter(
    "modeldeploy_analysis_checks_total", "Analysis checks of new revisions, by verdict.",
    [*_MD, "verdict"],
)  # fmt: skip
OUTCOMES: Final = Counter(
    "modeldeploy_rollout_outcomes_total", "Rollouts ended, by outcome (Promoted, RolledBack).",
    [*_MD, "outcome"],
)  # fmt: skip
NOTIFICATIONS: Final = Counter(
    "modeldeploy_notifications_total",
    "Rollout notifications (spec.rollout.notifications), by result: sent (a 2xx answer), "
    "failed (any other answer, no answer, a missing Secret) or dropped (the queue was full).",
    ["result"],
)
for _result in ("sent", "failed", "dropped"):
    NOTIFICATIONS.labels(result=_result)  # every series from 0, so increase() sees the first
PHASES: Final = ("Healthy", "Progressing", "Paused", "RolledBack", "Failed")


def record_status(namespace: str, name: str, status: ModelDeploymentStatus) -> None:
    """Export one ModelDeployment's rollout position from the status just computed."""
    CANARY_WEIGHT.labels(namespace, name).set(status.canary_weight)
    step = status.current_step
    ROLLOUT_STEP.labels(namespace, name).set(-1 if step is None else step)
    for phase in PHASES:
        PHASE.labels(namespace, name, phase).set(1 if status.phase == phase else 0)


def forget(namespace: str, name: str) -> None:
    """Drop a deleted ModelDeployment's series (they would report stale values forever)."""
    for gauge, labels in [(CANARY_WEIGHT, ()), (ROLLOUT_STEP, ())] + [
        (PHASE, (p,)) for p in PHASES
    ]:
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name, *labels)
