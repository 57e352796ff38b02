"""Durations on the API models: parsed once at validation, written back as the user wrote them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from modeldeploy.api.durations import DurationString
from modeldeploy.api.spec import Analysis, ModelDeploymentSpec, Rollout, Step


def spec(rollout: dict) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {"model": {"uri": "https://m/v1.onnx"}, "rollout": rollout}
    )


def test_every_duration_field_carries_its_length():
    s = spec({"analysis": {"interval": "1m30s"}, "scaleDownDelay": "250ms",
              "steps": [{"setWeight": 10, "pause": "2m"}, {"setWeight": 50}]})  # fmt: skip
    assert s.rollout.analysis.interval.seconds == 90.0
    assert s.rollout.analysis.interval.delta == timedelta(minutes=1, seconds=30)
    assert s.rollout.scale_down_delay.seconds == 0.25
    assert s.rollout.steps[0].hold == timedelta(minutes=2)
    assert s.rollout.steps[1].hold is None  # no pause: the rollout holds one interval


def test_defaults_are_durations_too():
    assert Analysis().interval.seconds == 30.0
    assert Rollout().scale_down_delay.delta == timedelta(seconds=30)
    assert [step.hold for step in Rollout().steps] == [timedelta(minutes=1)] * 2


def test_indefinite_is_a_pause_without_a_length():
    step = Step.model_validate({"setWeight": 10, "pause": "indefinite"})
    assert step.pause == "indefinite"
    assert step.hold is None


def test_the_wire_keeps_what_the_user_wrote():
    s = spec({"analysis": {"interval": "90s"}, "steps": [{"setWeight": 10, "pause": "1m30s"}]})
    wire = s.rollout.to_wire()
    assert wire["analysis"]["interval"] == "90s"  # not "1m30s": the user's spelling stays
    assert wire["steps"][0]["pause"] == "1m30s"
    assert type(wire["analysis"]["interval"]) is str
    assert ModelDeploymentSpec.model_validate(s.to_wire()) == s


def test_a_duration_is_a_string_for_everything_else():
    d = DurationString("1h30m")
    assert d == "1h30m"
    assert f"[{d}]" == "[1h30m]"  # as a PromQL range
    assert d.seconds == 5400.0
    with pytest.raises(ValueError, match="must be a duration"):
        DurationString("soon")


def test_bad_durations_are_refused_with_the_same_words():
    with pytest.raises(ValidationError, match="'-30s' must be a duration such as 250ms"):
        Analysis.model_validate({"interval": "-30s"})
    with pytest.raises(ValidationError, match="greater than zero"):
        Analysis.model_validate({"interval": "0s"})
    with pytest.raises(ValidationError, match="Input should be a valid string"):
        Analysis.model_validate({"interval": 30})
