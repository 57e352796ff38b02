"""`modeldeploy validate`: the offline gate refuses each bad spec, naming the field and the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from modeldeploy.cli import main, validation_errors
from speccases import BAD_SPECS, EXAMPLES, BadSpec


@pytest.mark.parametrize("case", BAD_SPECS, ids=lambda c: c.id)
def test_bad_spec_is_refused_naming_the_field(case: BadSpec) -> None:
    errors = validation_errors(case.document())
    assert errors, f"{case.id} was accepted"
    expected = case.offline_says or case.says
    assert any(e.startswith(f"{case.field}: ") and expected in e for e in errors), (
        f"no error on {case.field} saying {expected!r}; got {errors}"
    )


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path):
    for doc in yaml.safe_load_all(path.read_text()):
        assert validation_errors(doc) == []


def test_cli_exit_codes_and_output(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(BAD_SPECS[0].document("broken")))
    assert main(["validate", "-f", str(EXAMPLES / "canary.yaml")]) == 0
    assert "modeldeployment.modeldeploy.io/iris valid" in capsys.readouterr().out
    assert main(["validate", "-f", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "modeldeployment.modeldeploy.io/broken is invalid" in err
    assert "spec.model.uri: Required value" in err


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "modeldeploy.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("modeldeploy ")
