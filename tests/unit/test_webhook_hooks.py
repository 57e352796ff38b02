"""Webhook hooks, pure: when a call is owed, what it says, and how its result decides.

Through plan() in a loop (tests/rolloutkit.py), the runtime's part played by handing results in
as reconcile does (`webhooks=`); the HTTP side is tests/unit/test_webhook_calls.py, both together
against a real API server tests/integration/test_webhooks.py.
"""

from __future__ import annotations

from datetime import timedelta

from hookkit import reasons, rolling
from modeldeploy.core.hooks import WEBHOOK_GRACE, WebhookResult
from rolloutkit import GATEWAY

CHECKER = {"name": "checker", "timeout": "1m",
           "webhook": {"url": "http://checker.ml.svc:8080/verify", "retries": 1}}  # fmt: skip


def test_a_pre_rollout_webhook_is_owed_with_the_rollout_in_its_body() -> None:
    cluster, candidate = rolling("Canary", GATEWAY, preRollout=[CHECKER])
    stable = cluster.status.stable_revision.name
    p = cluster.reconcile()
    assert "HookStarted" in reasons(cluster)
    (call,) = p.webhook_calls
    assert call.key == ("preRollout", "checker", candidate)
    assert call.field == "spec.rollout.hooks.preRollout[0].webhook"
    assert call.deadline == cluster.now + timedelta(minutes=1)
    assert call.payload == {
        "modelDeployment": {"namespace": "ml", "name": "fraud", "uid": "uid-1"},
        "hook": {"name": "checker", "phase": "preRollout"},
        "phase": "preRollout",
        "stableRevision": {"name": stable, "modelVersion": "v1"},
        "candidateRevision": {"name": candidate, "modelVersion": "v2"},
        "previewUrl": "http://fraud-canary.ml.svc/v2/models/fraud",
        "url": "http://fraud.ml.svc/v2/models/fraud",
    }
    run = cluster.status.hooks[-1]
    assert (run.phase, run.verdict, run.job) == ("preRollout", "Running", None)
    assert p.wake_at == cluster.now + timedelta(seconds=1)  # read its result soon
    assert not any(kind == "Job" for kind, _ in cluster.children)  # no Job for a webhook

    for _ in range(3):  # still running: owed again on every plan (the runtime dedups it)
        cluster.now += timedelta(seconds=5)
        p = cluster.reconcile()
        assert [c.key for c in p.webhook_calls] == [call.key]
        assert "HookStarted" not in reasons(cluster)
        assert cluster.status.canary_weight == 0  # no live traffic before the verdict


def test_a_passing_webhook_lets_live_traffic_in_and_records_its_verdict() -> None:
    cluster, candidate = rolling("Canary", GATEWAY, preRollout=[CHECKER])
    cluster.reconcile()
    cluster.now += timedelta(seconds=1)
    result = WebhookResult(True, "HTTP 200 in 0.31s", 0.31, 1)
    p = cluster.reconcile(webhooks={("preRollout", "checker", candidate): result})
    assert p.webhook_calls == []
    run = cluster.status.hooks[-1]
    assert (run.verdict, run.message, run.duration_seconds, run.attempts) == (
        "Passed", "HTTP 200 in 0.31s", 0, 1,
    )  # fmt: skip
    assert "HookPassed" in reasons(cluster)
    cluster.reconcile()
    assert cluster.status.canary_weight == 20


def test_a_failing_webhook_rolls_back_with_the_answer_in_status_and_events() -> None:
    cluster, candidate = rolling("Canary", GATEWAY, preRollout=[CHECKER])
    cluster.reconcile()
    result = WebhookResult(False, "HTTP 500: checker down after 2 attempts", 3.2, 2)
    cluster.reconcile(webhooks={("preRollout", "checker", candidate): result})
    assert cluster.status.phase == "RolledBack"
    assert cluster.status.rolled_back_revision.name == candidate
    run = cluster.status.hooks[-1]
    assert (run.verdict, run.attempts, run.duration_seconds) == ("Failed", 2, 3)
    failed = next(e for e in cluster.last.events if e.reason == "HookFailed")
    assert "HTTP 500: checker down" in failed.message
    rolled = next(e for e in cluster.last.events if e.reason == "RolledBack")
    assert "hook failed: preRollout hook checker: HTTP 500" in rolled.message


def test_a_passing_pre_promotion_webhook_promotes_a_blue_green_candidate() -> None:
    cluster, candidate = rolling("BlueGreen", prePromotion=[CHECKER])
    cluster.reconcile()  # at full size...
    p = cluster.reconcile()  # ...and Ready: its prePromotion webhook is owed
    (call,) = p.webhook_calls
    assert call.payload["previewUrl"] == "http://fraud-canary.ml.svc/v2/models/fraud"
    result = WebhookResult(True, "HTTP 204 in 0.05s", 0.05, 1)
    cluster.reconcile(webhooks={call.key: result})
    assert cluster.status.stable_revision.name == candidate
    assert "prePromotion hooks passed (checker)" in cluster.status.history[-1].message


def test_a_webhook_without_a_verdict_past_its_timeout_fails() -> None:
    cluster, _ = rolling("Canary", GATEWAY, preRollout=[CHECKER])
    cluster.reconcile()
    cluster.now += timedelta(minutes=1) + WEBHOOK_GRACE
    p = cluster.reconcile()
    assert p.webhook_calls == []
    assert cluster.status.phase == "RolledBack"
    assert cluster.status.hooks[-1].message.startswith("DeadlineExceeded: no verdict within")


def test_job_and_webhook_hooks_of_one_phase_must_all_pass() -> None:
    smoke = {"name": "smoke", "job": {"template": {"spec": {"containers": [
        {"name": "c", "image": "curl"}]}}}}  # fmt: skip
    cluster, candidate = rolling("Canary", GATEWAY, preRollout=[smoke, CHECKER])
    cluster.reconcile()
    passed = WebhookResult(True, "HTTP 200 in 0.01s", 0.01, 1)
    cluster.reconcile(webhooks={("preRollout", "checker", candidate): passed})
    assert cluster.status.canary_weight == 0  # the Job still runs
    assert [(r.name, r.verdict) for r in cluster.status.hooks] == [
        ("smoke", "Running"), ("checker", "Passed"),
    ]  # fmt: skip
