"""Settings: flags over environment variables over defaults, secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve import config


def test_defaults_and_name_from_uri() -> None:
    settings = config.load(["--model", "https://h/fraud/v7.onnx?sig=abc"], {})
    assert settings.name == "v7"
    assert settings.port == 8080
    assert settings.max_batch_size == 32
    assert settings.auth_enabled is False


def test_environment_then_flags() -> None:
    env = {"MODELSERVE_MODEL": "/m/iris.onnx", "MODELSERVE_PORT": "9000",
           "MODELSERVE_MAX_DELAY_MS": "2.5", "MODELSERVE_ACCESS_LOG": "false",
           "MODELSERVE_REJECT_NONFINITE": "yes"}  # fmt: skip
    from_env = config.load([], env)
    assert (from_env.model, from_env.port, from_env.max_delay_ms) == ("/m/iris.onnx", 9000, 2.5)
    assert from_env.access_log is False
    assert from_env.reject_nonfinite is True
    assert config.load(["--port", "9100"], env).port == 9100


def test_secrets_from_files(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    settings = config.load(["--model", "m.onnx", "--auth-token-file", str(token)], {})
    assert settings.auth_token == "s3cret"
    assert settings.auth_enabled
    assert "s3cret" not in repr(settings)


def test_a_token_and_a_jwt_key_together_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both set used to keep the token and drop JWT without a word: clients holding JWTs were
    refused. Start-up now fails (exit 2) and the message names both flags."""
    key = tmp_path / "public.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\n")
    for extra in (["--jwt-secret", "s3cret"], ["--jwt-public-key-file", str(key)]):
        with pytest.raises(SystemExit) as exited:
            config.load(["--model", "m.onnx", "--auth-token", "t0ken", *extra], {})
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert "--auth-token" in error
        assert extra[0] in error
    with pytest.raises(SystemExit) as exited:
        config.load(
            ["--model", "m.onnx"], {"MODELSERVE_AUTH_TOKEN": "t", "MODELSERVE_JWT_SECRET": "s"}
        )
    assert exited.value.code == 2


def test_secrets_from_the_environment_are_stripped_like_files(tmp_path: Path) -> None:
    """`kubectl create secret --from-file` and `echo` add a newline: a token read from a file
    was stripped of it, the same token from an environment variable was not, so the bearer token
    clients sent never matched."""
    env = {"MODELSERVE_MODEL": "m.onnx", "MODELSERVE_AUTH_TOKEN": "s3cret\n",
           "MODELSERVE_METRICS_TOKEN": "scr4pe\n"}  # fmt: skip
    settings = config.load([], env)
    assert settings.auth_token == "s3cret"
    assert settings.metrics_token == "scr4pe"
    secret = config.load([], {"MODELSERVE_MODEL": "m.onnx", "MODELSERVE_JWT_SECRET": "k3y\r\n"})
    assert secret.jwt_secret == "k3y"
    scrape = tmp_path / "scrape"
    scrape.write_text("from-file\n")
    from_file = config.load(["--model", "m.onnx", "--metrics-token-file", str(scrape)], {})
    assert from_file.metrics_token == "from-file"
    assert "from-file" not in repr(from_file)


def test_an_empty_secret_is_refused_rather_than_turning_auth_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token that is only a newline would strip to nothing, which reads as 'no auth': a
    server its operator believes protected would answer anyone."""
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for argv in (["--auth-token-file", str(empty)], ["--jwt-secret", " \n"],
                 ["--metrics-token", "\n"]):  # fmt: skip
        with pytest.raises(SystemExit) as exited:
            config.load(["--model", "m.onnx", *argv], {})
        assert exited.value.code == 2
        assert "empty" in capsys.readouterr().err


def test_drift_metrics_flag() -> None:
    assert config.load(["--model", "m.onnx"], {}).drift_metrics is True
    off = config.load(["--model", "m.onnx", "--drift-metrics", "false"], {})
    assert off.drift_metrics is False
    assert (
        config.load([], {"MODELSERVE_MODEL": "m", "MODELSERVE_DRIFT_METRICS": "no"}).drift_metrics
        is False
    )
