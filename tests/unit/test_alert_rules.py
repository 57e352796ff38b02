"""Every alert in the chart fires when it should, on series that start the way the real ones do.

`promtool test rules` (Prometheus' own rule engine) evaluates the PrometheusRule the chart
renders against series written out minute by minute. The series are shaped like the scrapes:
- the operator's labelled counters (prometheus_client) do not exist until their first
  increment, and then start at 1 (`modeldeploy_rollout_outcomes_total`, reconcile errors);
- a model server's counter for a status code appears at the first request answered with it,
  already counting what came between two scrapes;
- the phase gauge exists from the first reconcile, 0 or 1.
An alert written as `increase(counter[15m]) > 0` never sees a series' first sample as an
increase, so the first rollback of a ModelDeployment would never page: the tests below start
from absent series to catch exactly that.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from unit.test_chart import ALL_MONITORS, MONITORING, one, render

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian's prometheus package has it: hack/deps.sh)",
)

MD = 'namespace="ml", name="fraud", job="modeldeploy", instance="10.0.0.5:8080"'
POD = 'namespace="ml", model="fraud", version="v2", protocol="rest", pod="fraud-abc-1"'


def series(*values: float | None) -> str:
    """One sample a minute; None is a scrape in which the series did not exist."""
    return " ".join("_" if v is None else f"{v:g}" for v in values)


def counter(starts_at: int, increments: dict[int, float], minutes: int) -> str:
    """A counter absent until minute `starts_at`, then summing `increments` (minute: amount)."""
    out: list[float | None] = []
    total = 0.0
    for minute in range(minutes):
        total += increments.get(minute, 0)
        out.append(None if minute < starts_at else total)
    return series(*out)


def alerts(at: str, alert: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert,
            "exp_alerts": [{"exp_labels": labels}] if labels else []}  # fmt: skip


def fired(alert: str, at: str, **labels: str) -> dict[str, Any]:
    return alerts(at, alert, {"severity": "warning", **labels})


def quiet(alert: str, at: str) -> dict[str, Any]:
    return alerts(at, alert)


def groups() -> list[dict[str, Any]]:
    return list(one(render(*MONITORING, *ALL_MONITORS), "PrometheusRule")["spec"]["groups"])


def run_promtool(tmp_path: Path, tests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    # Whether and with which labels each alert fires is under test; its text is checked by
    # test_the_rules_and_their_templates_are_valid.
    bare = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
            for g in groups()]  # fmt: skip
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": bare}))
    suite = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def check(tmp_path: Path, input_series: list[dict[str, str]], cases: list[dict[str, Any]]) -> None:
    out = run_promtool(tmp_path, [{"interval": "1m", "input_series": input_series,
                                   "alert_rule_test": cases}])  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_first_rollback_of_a_model_deployment_alerts(tmp_path: Path) -> None:
    outcomes = f'modeldeploy_rollout_outcomes_total{{{MD}, outcome="RolledBack"}}'
    labels = {"namespace": "ml", "name": "fraud", "outcome": "RolledBack",
              "job": "modeldeploy", "instance": "10.0.0.5:8080"}  # fmt: skip
    # Created at its first increment (minute 10), a second rollback at minute 40.
    values = counter(10, {10: 1, 40: 1}, 70)
    check(tmp_path, [{"series": outcomes, "values": values}], [
        quiet("ModelRolledBack", "9m"),
        fired("ModelRolledBack", "11m", **labels),
        fired("ModelRolledBack", "20m", **labels),
        quiet("ModelRolledBack", "30m"),  # nothing new for 15 minutes
        fired("ModelRolledBack", "41m", **labels),
        quiet("ModelRolledBack", "60m"),
    ])  # fmt: skip


def test_a_rollback_after_an_operator_restart_alerts(tmp_path: Path) -> None:
    """A restarted operator starts its counters again from nothing."""
    outcomes = f'modeldeploy_rollout_outcomes_total{{{MD}, outcome="RolledBack"}}'
    values = series(*([3.0] * 20), *([None] * 5), *([1.0] * 10))
    check(tmp_path, [{"series": outcomes, "values": values}], [
        quiet("ModelRolledBack", "19m"),
        fired("ModelRolledBack", "26m", namespace="ml", name="fraud", outcome="RolledBack",
              job="modeldeploy", instance="10.0.0.5:8080"),
    ])  # fmt: skip


def test_a_model_failing_from_its_first_scrape_alerts(tmp_path: Path) -> None:
    ok = f'modelserve_requests_total{{{POD}, code="200"}}'
    errors = f'modelserve_requests_total{{{POD}, code="500"}}'
    # 10 requests a second; from minute 10 a fifth of them fail (the 500 series appears then,
    # already counting the failures since the scrape before).
    check(tmp_path, [
        {"series": ok, "values": counter(0, dict.fromkeys(range(40), 600) | dict.fromkeys(
            range(10, 40), 480), 40)},
        {"series": errors, "values": counter(10, dict.fromkeys(range(10, 40), 120), 40)},
    ], [
        quiet("ModelHighErrorRate", "9m"),
        fired("ModelHighErrorRate", "20m", namespace="ml", model="fraud", version="v2"),
    ])  # fmt: skip


def test_slow_answers_alert(tmp_path: Path) -> None:
    bucket = "modelserve_request_duration_seconds_bucket"
    rows = []
    for le, share in (("0.1", 0.0), ("0.5", 0.5), ("1", 1.0), ("+Inf", 1.0)):
        name = f'{bucket}{{{POD}, le="{le}"}}'
        # Buckets appear with the first observation (minute 2); from then on 600 a minute,
        # half of them slower than 500 ms.
        rows.append({"series": name, "values": counter(2, dict.fromkeys(range(2, 30), 600 * share),
                                                        30)})  # fmt: skip
    check(tmp_path, rows, [
        quiet("ModelHighLatencyP99", "3m"),
        fired("ModelHighLatencyP99", "15m", namespace="ml", model="fraud", version="v2"),
    ])  # fmt: skip


def test_a_failed_model_deployment_alerts(tmp_path: Path) -> None:
    phase = f'modeldeploy_phase{{{MD}, phase="Failed"}}'
    check(tmp_path, [{"series": phase, "values": series(*([0] * 10), *([1] * 20))}], [
        quiet("ModelDeploymentFailed", "12m"),
        fired("ModelDeploymentFailed", "16m", namespace="ml", name="fraud", phase="Failed",
              job="modeldeploy", instance="10.0.0.5:8080"),
    ])  # fmt: skip


@pytest.mark.parametrize("result", ["error", "failed"])
def test_reconciles_failing_under_backoff_alert(tmp_path: Path, result: str) -> None:
    """A reconcile that keeps failing is retried with backoff capped at 5 minutes: one
    failure every 5 minutes must keep the alert up (and an exception counts as much as a
    failed apply)."""
    reconciles = f'modeldeploy_reconciles_total{{job="modeldeploy", result="{result}"}}'
    failures = counter(5, dict.fromkeys(range(5, 60, 5), 1), 60)
    check(tmp_path, [{"series": reconciles, "values": failures}], [
        quiet("ModeldeployReconcileErrors", "10m"),
        fired("ModeldeployReconcileErrors", "30m", job="modeldeploy", result=result),
        fired("ModeldeployReconcileErrors", "55m", job="modeldeploy", result=result),
    ])  # fmt: skip


def test_the_rules_and_their_templates_are_valid(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups()}))
    assert PROMTOOL is not None
    out = subprocess.run([PROMTOOL, "check", "rules", "rules.yaml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_in_the_chart_is_tested() -> None:
    names = {r["alert"] for g in groups() for r in g["rules"]}
    tested = set()
    for name, fn in globals().items():
        if name.startswith("test_") and fn is not test_every_alert_in_the_chart_is_tested:
            tested |= {a for a in names if a in (fn.__code__.co_consts or ()) or any(
                a in str(c) for c in fn.__code__.co_consts)}  # fmt: skip
    assert tested == names
