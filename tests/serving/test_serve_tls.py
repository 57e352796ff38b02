"""TLS: HTTPS with the given certificate and key."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
import servekit
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https(model_dir: Path, log_dir: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = servekit.start(model_dir / "mlp.onnx", "--tls-cert", str(cert), "--tls-key",
                            str(key), log_dir=log_dir, scheme="https")  # fmt: skip
    context = ssl.create_default_context(cafile=str(cert))
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                        "data": [1, 2, 3, 4]}]}  # fmt: skip
    try:
        with httpx.Client(base_url=server.url, verify=context) as client:
            assert client.post("/v2/models/mlp/infer", json=body).status_code == 200
            assert client.get("/v2/health/ready").status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{server.port}/v2/health/live", timeout=2)
    finally:
        assert server.stop() == 0


def _other_key(folder: Path) -> Path:
    path = folder / "other.key"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _garbage(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    return path


def _broken(case: str, folder: Path, cert: Path, key: Path) -> tuple[Path, Path]:
    """A good certificate and key pair, with one of the two broken the way `case` says."""
    if case == "missing-cert":
        return folder / "absent.crt", key
    if case == "missing-key":
        return cert, folder / "absent.key"
    if case == "bad-cert":
        return _garbage(folder, "bad.crt"), key
    if case == "bad-key":
        return cert, _garbage(folder, "bad.key")
    return cert, _other_key(folder)


# case -> (the file the error line must name, words it must hold)
BROKEN = {
    "missing-cert": ("absent.crt", "cannot read"),
    "missing-key": ("absent.key", "cannot read"),
    "bad-cert": ("bad.crt", "certificate"),
    "bad-key": ("bad.key", "private key"),
    "mismatch": ("other.key", "does not match"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_tls_startup_errors_are_one_line_naming_the_file(
    model_dir: Path, log_dir: Path, tmp_path: Path, case: str
) -> None:
    """A broken certificate or key: exit 2 (a configuration error) with one error line that
    names the file and says what is wrong, not a traceback."""
    cert, key = self_signed(tmp_path)
    named, words = BROKEN[case]
    cert, key = _broken(case, tmp_path, cert, key)
    server = servekit.start(model_dir / "mlp.onnx", "--tls-cert", str(cert), "--tls-key",
                            str(key), log_dir=log_dir, wait_ready=False)  # fmt: skip
    code = server.process.wait(30)
    logs = server.logs()
    assert code == 2, logs
    assert "Traceback" not in logs
    errors = [line for line in logs.splitlines() if " ERROR " in line]
    assert len(errors) == 1, logs
    assert named in errors[0]
    assert words in errors[0]
