"""Settings: flags over environment variables over defaults, secrets from files."""

from __future__ import annotations

from pathlib import Path

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
