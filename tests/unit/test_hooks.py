"""Verification hooks: Jobs before traffic, before promotion, after promotion and rollback.

Through plan() in a loop (tests/rolloutkit.py): the Jobs it writes are kept as the API server
would keep them, and a test finishes one by writing the status the Job controller writes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hookkit import reasons, rolling
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.core.hooks import build_job, job_name, job_verdict
from modeldeploy.core.naming import DEPLOYMENT_LABEL
from rolloutkit import GATEWAY, Cluster

SMOKE = {"name": "smoke", "timeout": "2m",
         "job": {"template": {"metadata": {"labels": {"app": "smoke"}}, "spec": {
             "containers": [{"name": "check", "image": "curl"}]}}}}  # fmt: skip
DONE = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
FAILED = {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                          "message": "Job has reached the specified backoff limit"}]}  # fmt: skip


def jobs(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {name: obj for (kind, name), obj in cluster.children.items() if kind == "Job"}


def finish(cluster: Cluster, name: str, status: dict[str, Any]) -> None:
    cluster.children[("Job", name)] = {**cluster.children[("Job", name)], "status": status}


def test_a_passing_pre_promotion_job_verifies_a_blue_green_candidate_without_traffic() -> None:
    cluster, candidate = rolling("BlueGreen", prePromotion=[SMOKE])
    cluster.reconcile()  # the candidate comes up at full size...
    assert jobs(cluster) == {}
    cluster.reconcile()  # ...and, Ready, is checked by its prePromotion Job
    assert "HookStarted" in reasons(cluster)
    ((name, job),) = jobs(cluster).items()
    assert name == job_name("fraud", "prePromotion", "smoke", candidate)
    run = cluster.status.hooks[-1]
    assert (run.phase, run.name, run.revision, run.verdict) == (
        "prePromotion",
        "smoke",
        candidate,
        "Running",
    )
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELDEPLOY_PREVIEW_URL"] == "http://fraud-canary.ml.svc/v2/models/fraud"
    assert env["MODELDEPLOY_CANARY_REVISION"] == candidate
    assert env["MODELDEPLOY_PHASE"] == "prePromotion"
    assert job["spec"]["activeDeadlineSeconds"] == 120  # the hook's timeout
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # Hook pods are no serving pods: no Service or PodDisruptionBudget selects them.
    assert DEPLOYMENT_LABEL not in job["spec"]["template"]["metadata"]["labels"]
    assert job["metadata"]["labels"][DEPLOYMENT_LABEL] == "fraud"  # the Job is a child

    for _ in range(3):  # running, and quiet checks: no promotion, no second Job
        cluster.now += timedelta(seconds=30)
        cluster.reconcile("Inconclusive", requests=0)
        assert cluster.status.canary_revision.name == candidate
        assert len(jobs(cluster)) == 1
    progressing = next(c for c in cluster.status.conditions if c.type == "Progressing")
    assert progressing.reason == "RunningHooks"

    finish(cluster, name, DONE)
    cluster.now += timedelta(seconds=5)
    cluster.reconcile()
    assert cluster.status.stable_revision.name == candidate
    assert "HookPassed" in reasons(cluster)
    assert cluster.status.hooks[-1].verdict == "Passed"
    assert cluster.status.hooks[-1].duration_seconds == 95
    assert "prePromotion hooks passed (smoke)" in cluster.status.history[-1].message


def test_a_failing_pre_promotion_job_rolls_back_and_runs_the_rollback_hooks() -> None:
    notify = {**SMOKE, "name": "notify"}
    cluster, candidate = rolling("BlueGreen", prePromotion=[SMOKE], onRollback=[notify])
    cluster.reconcile()
    cluster.reconcile()
    finish(cluster, job_name("fraud", "prePromotion", "smoke", candidate), FAILED)
    cluster.reconcile()
    assert cluster.status.phase == "RolledBack"
    assert cluster.status.rolled_back_revision.name == candidate
    assert "HookFailed" in reasons(cluster)
    failure = next(e for e in cluster.last.events if e.reason == "RolledBack")
    assert "BackoffLimitExceeded" in failure.message
    assert [(r.phase, r.name, r.verdict) for r in cluster.status.hooks] == [
        ("prePromotion", "smoke", "Failed"),
        ("onRollback", "notify", "Running"),
    ]
    assert job_name("fraud", "onRollback", "notify", candidate) in jobs(cluster)
    cluster.reconcile()
    assert cluster.revisions[candidate].replicas == 0


def test_pre_rollout_hooks_hold_live_traffic_until_they_pass() -> None:
    cluster, candidate = rolling("Canary", GATEWAY, preRollout=[SMOKE])
    cluster.reconcile()
    cluster.reconcile()
    assert cluster.revisions[candidate].replicas == 1  # up, reachable through the preview...
    assert cluster.status.canary_weight == 0  # ...but no live request
    route = cluster.children[("HTTPRoute", "fraud")]
    assert route["spec"]["rules"][-1]["backendRefs"][1]["weight"] == 0
    finish(cluster, job_name("fraud", "preRollout", "smoke", candidate), DONE)
    cluster.reconcile()
    assert cluster.status.canary_weight == 20


def test_post_promotion_hooks_report_and_never_undo_a_promotion() -> None:
    cluster, candidate = rolling("Immediate", postPromotion=[SMOKE])
    cluster.reconcile()
    cluster.reconcile()
    assert cluster.status.stable_revision.name == candidate
    name = job_name("fraud", "postPromotion", "smoke", candidate)
    assert name in jobs(cluster)
    finish(cluster, name, FAILED)
    cluster.reconcile()
    assert cluster.status.stable_revision.name == candidate
    assert cluster.status.hooks[-1].verdict == "Failed"
    assert "HookFailed" in reasons(cluster)


def test_a_user_promotion_runs_no_hook() -> None:
    cluster, candidate = rolling("BlueGreen", prePromotion=[SMOKE])
    cluster.reconcile()
    cluster.reconcile(action="promote")
    cluster.reconcile()
    assert cluster.status.stable_revision.name == candidate


def test_a_hook_runs_once_per_revision_even_after_a_restart() -> None:
    cluster, _ = rolling("BlueGreen", prePromotion=[SMOKE])
    cluster.reconcile()
    cluster.reconcile()
    before = dict(cluster.children)
    for _ in range(3):
        cluster.reconcile()
        assert "HookStarted" not in reasons(cluster)
        assert [w.obj["metadata"]["name"] for w in cluster.last.writes] == []
    assert cluster.children.keys() == before.keys()


def test_job_verdicts() -> None:
    assert job_verdict(None)[0] == "Running"
    assert job_verdict({"status": {"active": 1}})[0] == "Running"
    assert job_verdict({"status": DONE}) == ("Passed", "exit code 0")
    assert job_verdict({"status": FAILED})[0] == "Failed"
    hook = ModelDeploymentSpec.model_validate({
        "model": {"uri": "file:///m.onnx"}, "rollout": {"hooks": {"preRollout": [SMOKE]}},
    }).rollout.hooks.pre_rollout[0]  # fmt: skip
    assert hook.timeout.seconds == 120
    assert build_job  # imported for the doctests' sake
