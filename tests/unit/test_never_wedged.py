"""Issue 20: every input ends in an honest status, and failures back off instead of looping.

The pure parts of the promise: the action annotation's form, what the status holds of a value
too long for it, the Degraded status a failed write becomes, the backoff's delays, the phase at
zero replicas and the actions with nothing to act on. The API server's side is in
tests/integration/test_never_wedged.py.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from modeldeploy.api.action import ACTION_VERBS, action_problem
from modeldeploy.api.spec import OPERATOR_ENV, ModelDeploymentSpec
from modeldeploy.api.status import (
    HANDLED_ACTION_LIMIT,
    Condition,
    HistoryEntry,
    ModelDeploymentStatus,
    fit_handled_action,
)
from modeldeploy.cli import validation_errors
from modeldeploy.core.actions import impossible_action
from modeldeploy.core.desired.deployment import build_deployment
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.failures import (
    BACKOFF_CAP_SECONDS,
    Failure,
    backoff_seconds,
    degraded,
)
from modeldeploy.core.live import LiveChildren, LiveRevision
from modeldeploy.core.plan import plan, target_revision
from modeldeploy.core.rollout import ACTIONS
from modeldeploy.core.settings import Settings
from speccases import good_spec

OWNER = Owner("fraud", "ml", "uid-1")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LONG_ACTION = "promote@" + "x" * 300


# --- the action annotation ---------------------------------------------------------------------


def test_the_action_form_knows_the_operators_verbs():
    assert set(ACTION_VERBS) == set(ACTIONS)
    assert action_problem("promote@2026-01-01T00:00:00.123456Z") is None
    assert action_problem("undo@1") is None


@pytest.mark.parametrize(
    "text", [LONG_ACTION, "promote", "promote@", "deploy@2026-01-01T00:00:00Z", "promote@a b"]
)
def test_a_malformed_action_is_named_with_the_form_to_use(text):
    problem = action_problem(text)
    assert problem is not None
    assert "modeldeploy.io/action" in problem
    assert "VERB@TIME" in problem


def test_the_offline_validator_refuses_a_malformed_action_annotation():
    doc = good_spec()
    doc["metadata"]["annotations"] = {"modeldeploy.io/action": LONG_ACTION}
    errors = validation_errors(doc)
    assert any(e.startswith("metadata.annotations: modeldeploy.io/action") for e in errors), errors
    doc["metadata"]["annotations"] = {"modeldeploy.io/action": "abort@2026-01-01T00:00:00Z"}
    assert validation_errors(doc) == []


def test_a_handled_action_too_long_for_the_status_is_kept_shortened_but_distinct():
    fitted = fit_handled_action(LONG_ACTION)
    assert len(fitted) <= HANDLED_ACTION_LIMIT
    assert fitted != fit_handled_action("promote@" + "x" * 299 + "y")
    assert fit_handled_action("promote@1") == "promote@1"
    ModelDeploymentStatus(handled_action=fitted)  # the model holds it


def test_free_text_in_the_status_is_cut_to_fit_never_refused():
    message = "the API server said: " + "x" * 40_000
    condition = Condition(type="Degraded", status="True", reason="ApplyFailed", message=message,
                          last_transition_time=T0)  # fmt: skip
    assert len(condition.message) <= 32768
    assert condition.message.startswith("the API server")
    entry = HistoryEntry(time=T0, revision="r", event="RolledBack", message="y" * 5000)
    assert len(entry.message) <= 1024
    with pytest.raises(ValidationError):  # identities are never cut: they would name another
        HistoryEntry(time=T0, revision="r" * 300, event="RolledBack")


# --- a write that fails ----------------------------------------------------------------------


def test_a_failed_write_is_degraded_naming_the_object_and_the_answer():
    before = ModelDeploymentStatus(observed_generation=1)
    failure = Failure("ApplyFailed", "Deployment", "fraud-abc",
                      'Deployment.apps "fraud-abc" is invalid: spec.template.spec.nodeSelector: '
                      "Invalid value")  # fmt: skip
    after, events = degraded(before, before, [failure], T0, generation=2)
    assert after.observed_generation == 2
    assert after.phase == "Failed"
    (cond,) = [c for c in after.conditions if c.type == "Degraded"]
    assert (cond.status, cond.reason) == ("True", "ApplyFailed")
    assert cond.message.startswith("Deployment fraud-abc: Deployment.apps")
    assert "spec.template.spec.nodeSelector" in cond.message
    assert [(e.type, e.reason) for e in events] == [("Warning", "ApplyFailed")]
    # The same failure again: the status is unchanged, so nothing is written or posted.
    again, events = degraded(after, after, [failure], T0 + timedelta(seconds=5), generation=2)
    assert again == after
    assert events == []


def test_no_failure_changes_nothing():
    status = ModelDeploymentStatus(observed_generation=3)
    assert degraded(status, status, [], T0, generation=3) == (status, [])


def test_backoff_doubles_from_one_second_to_a_cap():
    delays = [backoff_seconds(n) for n in range(12)]
    assert delays[:6] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert max(delays) == BACKOFF_CAP_SECONDS == delays[-1] == 300.0
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert backoff_seconds(10_000) == BACKOFF_CAP_SECONDS  # never an overflow


# --- smaller items -----------------------------------------------------------------------------


def spec(**extra):
    return ModelDeploymentSpec.model_validate(
        {"model": {"uri": "https://m/v1.onnx", "version": "v1", "sha256": "f" * 64}, **extra}
    )


def test_zero_replicas_is_healthy_not_progressing():
    zero = spec(serving={"replicas": 0})
    rev = target_revision(OWNER, zero, Settings())
    live = LiveChildren(revisions={rev: LiveRevision(rev, 0, created=T0)}, children={})
    first = plan(OWNER, zero, 1, ModelDeploymentStatus(), live, Settings(), T0)
    out = plan(OWNER, zero, 1, first.status, live, Settings(), T0)
    progressing = next(c for c in out.status.conditions if c.type == "Progressing")
    ready = next(c for c in out.status.conditions if c.type == "Ready")
    assert (progressing.status, progressing.reason) == ("False", "Complete")
    assert ready.reason == "ScaledToZero"
    assert out.status.phase == "Healthy"


@pytest.mark.parametrize(
    ("action", "reason"),
    [("promote", "PromoteImpossible"), ("retry", "RetryImpossible"), ("abort", "AbortImpossible")],
)
def test_an_action_with_nothing_to_act_on_says_so(action, reason):
    settled = ModelDeploymentStatus.model_validate(
        {"stableRevision": {"name": "fraud-abc"}, "observedGeneration": 1}
    )
    event = impossible_action(action, settled, "fraud-abc")
    assert event is not None
    assert (event.type, event.reason) == ("Warning", reason)
    assert "nothing to" in event.message


def test_actions_with_something_to_act_on_are_not_refused():
    rolling = ModelDeploymentStatus.model_validate(
        {"stableRevision": {"name": "fraud-abc"}, "canaryRevision": {"name": "fraud-def"}}
    )
    assert impossible_action("promote", rolling, "fraud-def") is None
    assert impossible_action("abort", rolling, "fraud-def") is None
    rolled_back = ModelDeploymentStatus.model_validate(
        {"stableRevision": {"name": "fraud-abc"}, "rolledBackRevision": {"name": "fraud-def"}}
    )
    assert impossible_action("retry", rolled_back, "fraud-def") is None
    assert impossible_action("undo", rolled_back, "fraud-def") is None  # the rollout's to say


def test_the_operators_env_names_are_exactly_those_the_builder_sets():
    everything = spec(
        serving={
            "batching": {},
            "threads": {},
            "warmup": {"configMapKeyRef": {"name": "w", "key": "k"}},
            "tls": {"secretName": "tls"},
            "auth": {"type": "JWT", "secretRef": {"name": "s"}, "audience": "a", "issuer": "i"},
        }
    )
    hs256 = everything.model_copy(
        update={"serving": everything.serving.model_copy(update={"auth": spec(
            serving={"auth": {"type": "JWT", "algorithm": "HS256", "secretRef": {"name": "s"}}}
        ).serving.auth})}
    )  # fmt: skip
    token = spec(serving={"auth": {"secretRef": {"name": "s"}}})
    set_by_builder = set()
    for s in (everything, hs256, token):
        container = build_deployment(OWNER, s, Settings(), "fraud-abc", 1)["spec"]["template"]
        set_by_builder |= {e["name"] for e in container["spec"]["containers"][0]["env"]}
    assert set_by_builder == set(OPERATOR_ENV)
