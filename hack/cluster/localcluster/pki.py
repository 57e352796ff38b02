"""A cluster's PKI with openssl: a CA, the certificates it signs, and kubeconfigs embedding them.

ECDSA keys: every component accepts them, and openssl makes them in milliseconds, not seconds.
Which certificates a tier needs (names, subjects, SANs) is the tier's business, not this module's.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import subprocess
from collections.abc import Mapping
from pathlib import Path

from localcluster.cluster import ClusterError

EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
CA_OPTIONS = (
    "-days",
    "3650",
    "-subj",
    "/CN=modeldeploy-localkube-ca",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
)


def openssl(*args: str | int | Path) -> None:
    """Run openssl; fail with its stderr, which names what was wrong."""
    proc = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def sign_certificate(pki: Path, name: str, subject: str, usage: str, sans: str = "") -> None:
    """Make name.key and name.crt in pki, signed by its CA: usage serverAuth or clientAuth."""
    key, crt, csr, ext = (pki / f"{name}.{suffix}" for suffix in ("key", "crt", "csr", "ext"))
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage={usage}\n" + (f"subjectAltName={sans}\n" if sans else "")
    )
    openssl("req", "-new", *EC_KEY, "-keyout", key, "-out", csr, "-subj", subject)
    ca = ("-CA", pki / "ca.crt", "-CAkey", pki / "ca.key", "-set_serial", secrets.randbits(63))
    openssl("x509", "-req", "-in", csr, *ca, "-days", 3650, "-extfile", ext, "-out", crt)
    csr.unlink()
    ext.unlink()


def make_pki(pki: Path, apiserver_sans: str, clients: Mapping[str, str]) -> None:
    """Create the CA, the API server's certificate (for apiserver_sans, `IP:...,DNS:...`), a
    client certificate per name in clients (name -> subject) and the service-account key, once.

    Kept across restarts of the same state dir: etcd's data (service-account tokens, the
    kube-root-ca.crt ConfigMaps) was made with these keys.
    """
    if (pki / "sa.pub").exists():  # written last
        return
    pki.mkdir(mode=0o700, parents=True, exist_ok=True)
    key, crt = pki / "ca.key", pki / "ca.crt"
    openssl("req", "-x509", "-new", *EC_KEY, "-keyout", key, "-out", crt, *CA_OPTIONS)
    sign_certificate(pki, "apiserver", "/CN=kube-apiserver", "serverAuth", apiserver_sans)
    for name, subject in clients.items():
        sign_certificate(pki, name, subject, "clientAuth")
    # Service-account tokens are signed with RSA, as in every kubeadm cluster.
    sa_key = pki / "sa.key"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", sa_key)
    openssl("pkey", "-in", sa_key, "-pubout", "-out", pki / "sa.pub")


def write_kubeconfig(path: Path, server: str, pki: Path, cert: str) -> None:
    """Write a kubeconfig with the CA and client cert embedded, so a copy works anywhere."""

    def data(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "localkube",
                "cluster": {"server": server, "certificate-authority-data": data("ca.crt")},
            }
        ],
        "users": [
            {
                "name": cert,
                "user": {
                    "client-certificate-data": data(f"{cert}.crt"),
                    "client-key-data": data(f"{cert}.key"),
                },
            }
        ],
        "contexts": [{"name": "localkube", "context": {"cluster": "localkube", "user": cert}}],
        "current-context": "localkube",
    }
    path.touch(mode=0o600)
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is valid kubeconfig YAML


def admin_context(pki: Path) -> ssl.SSLContext:
    """TLS context that trusts the cluster CA and authenticates as admin (system:masters)."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    return ctx


def unverified_context() -> ssl.SSLContext:
    """TLS without verification, for the health endpoints of components that serve
    self-signed certificates (controller-manager, scheduler) on loopback."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
