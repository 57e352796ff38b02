"""Authentication: a static bearer token, and JWTs signed HS256 or RS256 (exp, aud, iss)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import servekit
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
SECRET = "a-long-enough-hs256-secret-for-tests-0123456789"


def claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"sub": "client", "aud": "models", "iss": "issuer",
                               "exp": int(time.time()) + 300}  # fmt: skip
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = tmp_path_factory.mktemp("keys") / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def token_server(model_dir: Path, log_dir: Path) -> Iterator[servekit.Server]:
    server = servekit.start(model_dir / "mlp.onnx", log_dir=log_dir,
                            env={"MODELSERVE_AUTH_TOKEN": "t0ken"})  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hs256_server(model_dir: Path, log_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    secret_file = tmp_path_factory.mktemp("secret") / "jwt"
    secret_file.write_text(SECRET + "\n")
    server = servekit.start(
        model_dir / "mlp.onnx", "--jwt-secret-file", str(secret_file),
        "--jwt-audience", "models", "--jwt-issuer", "issuer", log_dir=log_dir,
    )  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rs256_server(model_dir: Path, log_dir: Path, rsa_keys: tuple[bytes, Path]):
    server = servekit.start(
        model_dir / "mlp.onnx", "--jwt-public-key-file", str(rsa_keys[1]),
        "--jwt-audience", "models", log_dir=log_dir,
    )  # fmt: skip
    yield server
    server.stop()


def call(server: servekit.Server, authorization: str | None, path: str = "/v2/models/mlp/infer"):
    headers = {"Authorization": authorization} if authorization is not None else {}
    with server.client() as client:
        if path.endswith(("infer", ":predict")):
            body = BODY if "v2" in path else {"instances": [[1, 2, 3, 4]]}
            return client.post(path, json=body, headers=headers)
        return client.get(path, headers=headers)


@pytest.mark.parametrize(
    ("authorization", "status", "message"),
    [
        ("Bearer t0ken", 200, None),
        ("bearer t0ken", 200, None),
        (None, 401, "missing bearer token"),
        ("Bearer wrong", 401, "invalid bearer token"),
        ("Bearer t0ken0", 401, "invalid bearer token"),
        ("Basic dTpw", 401, "must be 'Bearer <token>'"),
        ("Bearer", 401, "must be 'Bearer <token>'"),
    ],
)
def test_static_token(token_server: servekit.Server, authorization, status, message) -> None:
    response = call(token_server, authorization)
    assert response.status_code == status, response.text
    if message:
        assert message in response.json()["error"]
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_token_guards_metadata_and_v1_but_not_probes(token_server: servekit.Server) -> None:
    assert call(token_server, None, "/v2/models/mlp").status_code == 401
    assert call(token_server, None, "/v2/models/mlp/config").status_code == 401
    assert call(token_server, None, "/v1/models/mlp:predict").status_code == 401
    assert call(token_server, "Bearer t0ken", "/v1/models/mlp:predict").status_code == 200
    assert call(token_server, "Bearer t0ken", "/v2/models/mlp").status_code == 200
    for open_path in ("/v2/health/live", "/v2/health/ready", "/v2/models/mlp/ready", "/metrics"):
        assert call(token_server, None, open_path).status_code == 200, open_path


@pytest.mark.parametrize(
    ("token_claims", "key", "status", "message"),
    [
        (claims(), SECRET, 200, None),
        (claims(exp=int(time.time()) - 60), SECRET, 401, "the JWT has expired"),
        (claims(aud="other"), SECRET, 401, "audience does not match"),
        (claims(iss="mallory"), SECRET, 401, "issuer does not match"),
        (claims(exp=None), SECRET, 401, "lacks the 'exp' claim"),
        (claims(), SECRET + "x", 401, "invalid JWT"),
    ],
)
def test_jwt_hs256(hs256_server: servekit.Server, token_claims, key, status, message) -> None:
    token = jwt.encode(token_claims, key, algorithm="HS256")
    response = call(hs256_server, f"Bearer {token}")
    assert response.status_code == status, response.text
    if message:
        assert message in response.json()["error"]


def test_jwt_hs256_garbage(hs256_server: servekit.Server) -> None:
    response = call(hs256_server, "Bearer not.a.jwt")
    assert response.status_code == 401
    assert "invalid JWT" in response.json()["error"]


def test_jwt_rs256(rs256_server: servekit.Server, rsa_keys: tuple[bytes, Path]) -> None:
    private, _ = rsa_keys
    good = jwt.encode(claims(), private, algorithm="RS256")
    assert call(rs256_server, f"Bearer {good}").status_code == 200
    assert call(rs256_server, f"Bearer {good}").status_code == 200  # cached path
    expired = jwt.encode(claims(exp=int(time.time()) - 60), private, algorithm="RS256")
    assert "expired" in call(rs256_server, f"Bearer {expired}").json()["error"]
    wrong_audience = jwt.encode(claims(aud="x"), private, algorithm="RS256")
    assert call(rs256_server, f"Bearer {wrong_audience}").status_code == 401
    # Algorithm confusion: an HS256 token "signed" with the public key must not pass.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(), other, algorithm="RS256")
    assert call(rs256_server, f"Bearer {forged}").status_code == 401
    hs = jwt.encode(claims(), "some-other-secret-that-is-long-enough-0123", algorithm="HS256")
    response = call(rs256_server, f"Bearer {hs}")
    assert response.status_code == 401
    assert "invalid JWT" in response.json()["error"]


def test_a_token_and_a_jwt_key_together_refuse_to_start(model_dir: Path, log_dir: Path) -> None:
    """Both set used to serve with the token only: every JWT client got 401 and nothing said
    why. The process now exits 2 at start-up naming both flags, before listening."""
    server = servekit.start(
        model_dir / "mlp.onnx", "--auth-token", "t0ken", log_dir=log_dir, wait_ready=False,
        env={"MODELSERVE_JWT_SECRET": SECRET},
    )  # fmt: skip
    try:
        assert server.process.wait(20) == 2
    finally:
        if server.process.poll() is None:  # the bug: it served; leave no process behind
            server.stop()
    logs = server.logs()
    assert "--auth-token and --jwt-secret" in logs
    assert "listening" not in logs


def test_a_token_from_the_environment_loses_its_newline(model_dir: Path, log_dir: Path) -> None:
    """`MODELSERVE_AUTH_TOKEN=$(cat token-file)` keeps no newline, but a value pasted into a
    manifest or a Secret made with `echo` does; the file variant was always stripped."""
    server = servekit.start(model_dir / "mlp.onnx", log_dir=log_dir,
                            env={"MODELSERVE_AUTH_TOKEN": "t0ken\n"})  # fmt: skip
    try:
        assert call(server, "Bearer t0ken").status_code == 200
    finally:
        server.stop()
