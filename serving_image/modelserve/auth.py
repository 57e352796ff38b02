"""Optional bearer authentication: a static token, or a JWT signed HS256 or RS256.

Inference and metadata require credentials when any auth option is set. Health probes stay open
(the kubelet carries no credentials), and so does /metrics, in part: the operational families
are served to anyone (the operator's pods provider scrapes through the API server's pod proxy
without credentials), while the families derived from request values need the inference
credential or a dedicated scrape token (`may_read_payloads`). Tokens are compared in constant
time. Verified JWTs are remembered until they expire, so an RS256 signature check is paid once
per token rather than once per request.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from typing import Final, Protocol

import jwt

from .errors import UnauthorizedError

CACHE_SIZE: Final = 4096


class Authenticator(Protocol):
    """Checks one request's Authorization header; raises UnauthorizedError when it does not pass."""

    def check(self, authorization: bytes | None) -> None: ...


def _bearer(authorization: bytes | None) -> bytes:
    if not authorization:
        raise UnauthorizedError("missing bearer token (Authorization: Bearer <token>)")
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        raise UnauthorizedError("the Authorization header must be 'Bearer <token>'")
    return token.strip()


class StaticToken:
    """One shared token, compared in constant time so its bytes cannot be guessed by timing."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def check(self, authorization: bytes | None) -> None:
        if not hmac.compare_digest(_bearer(authorization), self._token):
            raise UnauthorizedError("invalid bearer token")


class JwtValidator:
    """A JWT with a valid signature, an `exp` in the future and, when set, `aud` and `iss`."""

    def __init__(
        self,
        key: str,
        *,
        algorithm: str,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 5.0,
    ) -> None:
        self._key = key
        self._algorithm = algorithm
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        self._valid: OrderedDict[bytes, float] = OrderedDict()

    def check(self, authorization: bytes | None) -> None:
        token = _bearer(authorization)
        expires = self._valid.get(token)
        now = time.time()
        if expires is not None:
            if now <= expires + self._leeway:
                return
            del self._valid[token]
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthorizedError("the JWT has expired") from None
        except jwt.InvalidAudienceError:
            raise UnauthorizedError("the JWT audience does not match") from None
        except jwt.InvalidIssuerError:
            raise UnauthorizedError("the JWT issuer does not match") from None
        except jwt.MissingRequiredClaimError as exc:
            raise UnauthorizedError(f"the JWT lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError as exc:
            raise UnauthorizedError(f"invalid JWT: {exc}") from None
        self._valid[token] = float(claims["exp"])
        if len(self._valid) > CACHE_SIZE:
            self._valid.popitem(last=False)


def may_read_payloads(
    authorization: bytes | None, *, inference: Authenticator | None, scrape_token: str | None
) -> bool:
    """Whether a /metrics scrape may read the families derived from request values.

    With no secret configured there is nothing to check against: everything is served, as an
    open inference route would hand out the same values anyway. Otherwise a scrape without an
    Authorization header gets the operational families only, and one with a credential gets
    everything if it is the scrape token or passes inference auth. A wrong credential raises
    UnauthorizedError (401) instead of quietly serving less: a misconfigured Prometheus then
    shows a failing target, not dashboards that silently lost their drift panels.
    """
    if inference is None and not scrape_token:
        return True
    if authorization is None:
        return False
    if scrape_token and hmac.compare_digest(_bearer(authorization), scrape_token.encode()):
        return True
    if inference is None:
        raise UnauthorizedError("invalid bearer token for /metrics")
    inference.check(authorization)
    return True


def from_settings(
    *,
    token: str | None,
    jwt_secret: str | None,
    jwt_public_key: str | None,
    audience: str | None,
    issuer: str | None,
) -> Authenticator | None:
    """The configured authenticator, or None when the server is open."""
    if token:
        return StaticToken(token)
    if jwt_secret:
        return JwtValidator(jwt_secret, algorithm="HS256", audience=audience, issuer=issuer)
    if jwt_public_key:
        return JwtValidator(jwt_public_key, algorithm="RS256", audience=audience, issuer=issuer)
    return None
