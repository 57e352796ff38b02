"""`modeldeploy status`'s view: what a user reads, from an object, its Events and the time."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from modeldeploy.api import ModelDeployment
from modeldeploy.statusview import render

NOW = datetime(2026, 3, 1, 12, 10, tzinfo=UTC)
V1_SHA, V2_SHA = "9f2c1a0b3c4d" + "1" * 52, "0b3c4d9f2c1a" + "2" * 52
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def canary_mid_rollout() -> dict:
    """A Canary at its second step, as the operator writes it (checked by the API model)."""
    obj = {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 2},
        "spec": {
            "model": {"uri": "https://models/iris/v2.onnx", "version": "v2"},
            "serving": {"replicas": 2},
            "rollout": {
                "strategy": "Canary",
                "steps": [{"setWeight": 25, "pause": "1m"}, {"setWeight": 50, "pause": "5m"}],
                "hooks": {"prePromotion": [{"name": "smoke", "job": {"template": {"spec": {
                    "containers": [{"name": "t", "image": "curl"}]}}}}]},
            },
        },
        "status": {
            "observedGeneration": 2,
            "phase": "Progressing",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Serving",
                 "message": "2/2 pods of revision iris-7d9f8c ready",
                 "lastTransitionTime": "2026-03-01T11:00:00Z"},
                {"type": "Progressing", "status": "True", "reason": "NewRevision",
                 "message": "revision iris-a41e02: step 2/2, 1/2 pods ready; 50% of traffic",
                 "lastTransitionTime": "2026-03-01T12:00:00Z"},
                {"type": "Degraded", "status": "False", "reason": "AsExpected",
                 "lastTransitionTime": "2026-03-01T11:00:00Z"},
            ],
            "stableRevision": {"name": "iris-7d9f8c", "modelVersion": "v1",
                               "modelSha256": V1_SHA, "replicas": 2, "readyReplicas": 2,
                               "weight": 50},
            "canaryRevision": {"name": "iris-a41e02", "modelVersion": "v2",
                               "modelSha256": V2_SHA, "replicas": 2, "readyReplicas": 1,
                               "weight": 50},
            "canaryWeight": 50,
            "currentStep": 1,
            "stepStartedAt": "2026-03-01T12:08:00Z",
            "replicas": 4,
            "readyReplicas": 3,
            "url": "http://iris.ml.svc/v2/models/iris",
            "previewUrl": "http://iris-canary.ml.svc/v2/models/iris",
            "analysis": {
                "passedChecks": 2,
                "consecutiveFailures": 0,
                "checks": [
                    {"time": "2026-03-01T12:07:00Z", "step": 0, "verdict": "Passed", "results": [
                        {"metric": "error-rate", "verdict": "Passed", "canaryValue": 0.002,
                         "stableValue": 0.001, "limit": "max 0.01", "pValue": 0.41,
                         "requests": 812}]},
                    {"time": "2026-03-01T12:09:30Z", "step": 1, "verdict": "Passed", "results": [
                        {"metric": "error-rate", "verdict": "Passed", "canaryValue": 0.0,
                         "stableValue": 0.001, "limit": "max 0.01", "requests": 1630},
                        {"metric": "latency-p99", "verdict": "Passed", "canaryValue": 120.5,
                         "stableValue": 110.0, "limit": "max 250ms", "requests": 1630}]},
                ],
            },
            "hooks": [{"name": "smoke", "phase": "prePromotion", "revision": "iris-a41e02",
                       "job": "iris-smoke-a41e02", "verdict": "Passed",
                       "message": "the Job succeeded", "startedAt": "2026-03-01T12:05:00Z",
                       "durationSeconds": 12}],
            "history": [
                {"time": "2026-03-01T11:00:00Z", "revision": "iris-7d9f8c", "modelVersion": "v1",
                 "modelSha256": V1_SHA, "event": "Deployed", "message": "new serving template"},
                {"time": "2026-03-01T12:00:00Z", "revision": "iris-a41e02", "modelVersion": "v2",
                 "modelSha256": V2_SHA, "event": "Deployed", "message": "new serving template"},
            ],
        },
    }  # fmt: skip
    ModelDeployment.model_validate(obj)  # the fixture is what the operator really writes
    return obj


EVENTS = [
    {"type": "Normal", "reason": "RevisionCreated", "message": "created revision iris-a41e02",
     "lastTimestamp": "2026-03-01T12:00:00Z", "involvedObject": {"uid": "u-1"}},
    {"type": "Normal", "reason": "StepAdvanced", "message": "step 2/2: weight 50",
     "lastTimestamp": "2026-03-01T12:08:00Z", "count": 2, "involvedObject": {"uid": "u-1"}},
    {"type": "Warning", "reason": "RolledBack", "message": "an older object of the same name",
     "lastTimestamp": "2026-02-01T12:00:00Z", "involvedObject": {"uid": "u-0"}},
]  # fmt: skip


def lines_with(text: str, *words: str) -> list[str]:
    return [line for line in text.splitlines() if all(w in line for w in words)]


def test_the_header_says_what_it_is_and_where_the_rollout_stands():
    text = render(canary_mid_rollout(), EVENTS, NOW, color=False)
    assert lines_with(text, "Name:", "iris")
    assert lines_with(text, "Namespace:", "ml")
    [phase] = lines_with(text, "Phase:")
    assert "Progressing" in phase
    assert "revision iris-a41e02: step 2/2" in phase  # why, in the operator's words
    assert lines_with(text, "Strategy:", "Canary")
    # The step, its weight, and how long its pause still runs (5m from 12:08, now 12:10).
    assert lines_with(text, "Step:", "2/2", "setWeight 50", "pause 5m", "3m left")
    assert lines_with(text, "Weight:", "50%")
    assert lines_with(text, "Replicas:", "3/4 ready")
    assert lines_with(text, "Preview:", "http://iris-canary.ml.svc")


def test_each_revision_shows_its_model_digest_pods_and_traffic():
    text = render(canary_mid_rollout(), EVENTS, NOW, color=False)
    [stable] = lines_with(text, "stable", "iris-7d9f8c")
    assert stable.split() == ["stable", "iris-7d9f8c", "v1", V1_SHA[:12], "2/2", "50%"]
    [canary] = lines_with(text, "canary", "iris-a41e02")
    assert canary.split() == ["canary", "iris-a41e02", "v2", V2_SHA[:12], "1/2", "50%"]
    assert V1_SHA not in text  # the short form: 12 hex digits


def test_checks_show_their_verdicts_and_figures_newest_last():
    text = render(canary_mid_rollout(), EVENTS, NOW, color=False)
    assert lines_with(text, "Checks (last 2 of 2; 2 passed, 0 failed in a row)")
    [latency] = lines_with(text, "latency-p99")
    assert latency.split() == ["Passed", "latency-p99", "120.5ms", "110ms", "max", "250ms",
                               "-", "1630"]  # fmt: skip
    [first] = lines_with(text, "error-rate", "0.41")
    assert first.split()[:4] == ["3m", "1", "Passed", "error-rate"]


def test_hooks_history_and_only_this_objects_events_are_listed():
    text = render(canary_mid_rollout(), EVENTS, NOW, color=False)
    assert lines_with(text, "prePromotion", "smoke", "iris-a41e02", "Passed", "took 12s")
    assert lines_with(text, "Deployed", "iris-a41e02", "v2", V2_SHA[:12])
    assert lines_with(text, "2m (x2)", "Normal", "StepAdvanced")
    assert lines_with(text, "10m", "RevisionCreated")
    assert "older object" not in text
    assert text.index("RevisionCreated") < text.index("StepAdvanced")  # oldest first


def test_plain_when_asked_and_coloured_otherwise_with_the_same_words():
    plain = render(canary_mid_rollout(), EVENTS, NOW, color=False)
    coloured = render(canary_mid_rollout(), EVENTS, NOW, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[33m" in coloured  # Progressing in yellow
    assert ANSI.sub("", coloured) == plain


def test_a_digest_mismatch_stands_out():
    obj = canary_mid_rollout()
    canary = obj["status"]["canaryRevision"]
    del canary["modelSha256"]
    canary["modelSha256Conflict"] = [V1_SHA, V2_SHA]
    ModelDeployment.model_validate(obj)
    text = render(obj, [], NOW, color=False)
    assert lines_with(text, "canary", f"MISMATCH {V1_SHA[:12]},{V2_SHA[:12]}")
    assert "\x1b[31m" in render(obj, [], NOW, color=True)


def test_a_healthy_object_and_one_the_operator_has_not_seen():
    obj = canary_mid_rollout()
    status = obj["status"]
    for key in ("canaryRevision", "currentStep", "stepStartedAt", "previewUrl", "analysis"):
        status.pop(key)
    status["phase"], status["canaryWeight"] = "Healthy", 0
    status["conditions"][1].update(status="False", reason="Complete", message="")
    text = render(obj, [], NOW, color=False)
    assert lines_with(text, "Phase:", "Healthy")
    assert not lines_with(text, "Step:")
    assert not lines_with(text, "canary ")
    assert "Checks" not in text
    assert "Events" not in text

    fresh = {"metadata": {"name": "iris", "namespace": "ml"}, "spec": obj["spec"]}
    assert lines_with(render(fresh, [], NOW, color=False), "Phase:", "no status yet")


def test_the_model_line_shows_a_pin_short():
    obj = canary_mid_rollout()
    obj["spec"]["model"]["sha256"] = V2_SHA
    text = render(obj, [], NOW, color=False)
    assert lines_with(
        text, "Model:", "v2 (https://models/iris/v2.onnx)", f"pinned sha256 {V2_SHA[:12]}"
    )


def test_a_status_behind_the_spec_says_so():
    obj = canary_mid_rollout()
    obj["metadata"]["generation"] = 3
    text = render(obj, [], NOW, color=False)
    assert lines_with(text, "Phase:", "status of generation 2; the spec is at 3")


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_colour_only_on_a_terminal_and_never_with_no_color():
    from modeldeploy.cli import use_color

    assert use_color(_Stream(tty=True), {"TERM": "xterm"})
    assert not use_color(_Stream(tty=False), {"TERM": "xterm"})
    assert not use_color(_Stream(tty=True), {"TERM": "xterm", "NO_COLOR": "1"})
    assert not use_color(_Stream(tty=True), {"TERM": "dumb"})
    assert use_color(_Stream(tty=True), {"NO_COLOR": ""})  # set but empty: no-color.org
