"""The contract between the operator and the serving image: pods configured by environment.

The operator renders MODELSERVE_* variables; modelserve reads them. A misspelt variable would
be ignored silently by the server, so this test parses what the operator renders with the
server's own configuration code.
"""

from __future__ import annotations

import pytest

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.core.desired.deployment import build_deployment
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.settings import Settings

config = pytest.importorskip("modelserve.config", reason="needs the serving extra")


def rendered_env(spec: dict, tmp_path) -> dict[str, str]:
    deployment = build_deployment(
        Owner("fraud", "ml", "uid"), ModelDeploymentSpec.model_validate(spec), Settings(), "r", 1
    )
    env = {}
    for var in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        value = var["value"]
        if var["name"].endswith("_FILE") or var["name"] in ("MODELSERVE_TLS_CERT",
                                                             "MODELSERVE_TLS_KEY"):  # fmt: skip
            # Files the kubelet would mount from Secrets: give the server real ones to read.
            local = tmp_path / var["name"].lower()
            local.write_text("s3cr3t-value")
            value = str(local)
        env[var["name"]] = value
    return env


def test_every_variable_the_operator_sets_is_one_the_server_reads():
    known = {a.help.rsplit("[env ", 1)[1].rstrip("]") for a in config._parser({})._actions
             if a.help and "[env " in a.help}  # fmt: skip
    spec = {
        "model": {"uri": "https://m/fraud.onnx", "sha256": "a" * 64, "version": "v7"},
        "serving": {"batching": {"maxBatchSize": 8, "maxDelayMs": 3},
                    "threads": {"intraOp": 2, "interOp": 1},
                    "auth": {"type": "JWT", "algorithm": "RS256", "secretRef": {"name": "k"},
                             "audience": "models", "issuer": "idp"},
                    "tls": {"secretName": "cert"}},
    }  # fmt: skip
    deployment = build_deployment(
        Owner("fraud", "ml", "uid"), ModelDeploymentSpec.model_validate(spec), Settings(), "r", 1
    )
    names = {v["name"] for v in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert names - known == set()


def test_the_server_understands_what_the_operator_renders(tmp_path):
    spec = {
        "model": {"uri": "https://m/fraud.onnx", "sha256": "a" * 64, "version": "v7"},
        "serving": {"batching": {"maxBatchSize": 8, "maxDelayMs": 3},
                    "threads": {"intraOp": 2, "interOp": 1},
                    "auth": {"secretRef": {"name": "token"}}},
    }  # fmt: skip
    settings = config.load([], env=rendered_env(spec, tmp_path))
    assert settings.model == "https://m/fraud.onnx"
    assert settings.name == "fraud"
    assert settings.version == "v7"
    assert settings.sha256 == "a" * 64
    assert settings.port == 8080
    assert (settings.max_batch_size, settings.max_delay_ms) == (8, 3)
    assert (settings.intra_op_threads, settings.inter_op_threads) == (2, 1)
    assert settings.auth_token == "s3cr3t-value"
    assert str(settings.model_dir) == "/var/cache/modelserve"
    assert settings.log_format == "json"


def test_pvc_models_are_read_where_the_operator_mounts_them(tmp_path):
    env = rendered_env({"model": {"uri": "pvc://models/fraud/v7.onnx"}}, tmp_path)
    settings = config.load([], env=env)
    assert settings.model == "file:///mnt/models/models/fraud/v7.onnx"
