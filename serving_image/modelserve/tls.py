"""The server's TLS context, with start-up errors a person can act on.

`ssl` reports a bad certificate, a bad key and a key that belongs to another certificate alike
("PEM lib"), naming neither file. Each file is checked on its own first, so the one error line
says which file is wrong and how.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsConfigError(Exception):
    """The certificate or key cannot be used; the message names the file."""


class _EncryptedKeyError(Exception):
    """Raised by the password callback: the server has no passphrase to give."""


def _no_passphrase() -> bytes:
    raise _EncryptedKeyError


def _readable(path: str, what: str) -> None:
    try:
        Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 minimum) from PEM files; TlsConfigError names what is wrong."""
    _readable(cert, "certificate")
    _readable(key, "private key")
    try:
        ssl.create_default_context().load_verify_locations(cafile=cert)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"the TLS certificate {cert} holds no valid PEM certificate ({exc.reason or exc})"
        ) from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except _EncryptedKeyError:
        raise TlsConfigError(
            f"the TLS private key {key} is encrypted; mount it without a passphrase"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            message = f"the TLS private key {key} does not match the certificate {cert}"
        else:
            message = (
                f"the TLS private key {key} is not a valid PEM private key ({exc.reason or exc})"
            )
        raise TlsConfigError(message) from None
    return context
