"""Model URI → a verified local file.

Schemes: a plain path or file://, pvc://CLAIM/PATH (the claim mounted under `pvc_root`),
http(s):// (streamed to disk, retried with backoff) and s3:// (boto3, imported only when used).
The sha256 is computed on every file, pinned or not, so the `model_info` metric always says
which bytes are served; a pinned digest that differs refuses to serve before ONNX Runtime ever
parses the file.

An HTTP download attempt is bounded as a whole, from connecting to the last byte: a per-read
timeout lets a server that sends a byte a second keep the pod loading forever. A body shorter
than its Content-Length is a failed attempt, retried, never a model. Partial files are removed
on every failure. Userinfo in the URI is sent as Basic credentials (never on to a redirect's
host), and neither it nor the query string (a presigned URL's signature) is ever printed:
`redact_uri` is the one way the serving image shows a model URI.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import logging
import os
import socket
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .errors import ModelLoadError

log = logging.getLogger("modelserve.fetch")

CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class Fetched:
    """A model file on local disk and the sha256 of its bytes."""

    path: Path
    sha256: str


def redact_uri(uri: str) -> str:
    """The URI without userinfo, query or fragment: what logs, errors and metrics may show."""
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError:
        return "<a model URI that cannot be parsed>"
    host = parts.hostname or ""
    if ":" in host:  # IPv6: the brackets urlsplit removed
        host = f"[{host}]"
    if port:
        host = f"{host}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def fetch(
    uri: str,
    *,
    sha256: str | None,
    model_dir: Path,
    pvc_root: Path,
    timeout: float,
    retries: int,
) -> Fetched:
    """Resolve or download `uri`, then verify it; raises ModelLoadError saying what failed."""
    shown = redact_uri(uri)
    try:
        parsed = urllib.parse.urlsplit(uri)
    except ValueError:
        raise ModelLoadError(f"the model URI cannot be parsed: {shown}") from None
    scheme = parsed.scheme.lower()
    downloaded = scheme in {"http", "https", "s3"}
    if scheme in {"", "file"}:
        path = Path(urllib.parse.unquote(parsed.path) if scheme else uri)
    elif scheme == "pvc":
        path = pvc_root / parsed.netloc / urllib.parse.unquote(parsed.path).lstrip("/")
    elif scheme in {"http", "https"}:
        path = _download_http(uri, model_dir, timeout=timeout, retries=retries)
    elif scheme == "s3":
        path = _download_s3(parsed.netloc, parsed.path.lstrip("/"), model_dir)
    else:
        raise ModelLoadError(f"unsupported model URI scheme {scheme!r} in {shown}")
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path} (from {shown})")
    digest = file_sha256(path)
    if sha256 is not None and digest != sha256.lower():
        if downloaded:  # our copy, not the user's file: never leave the wrong bytes cached
            path.unlink(missing_ok=True)
        raise ModelLoadError(
            f"sha256 mismatch for {shown}: expected {sha256.lower()}, got {digest}"
        )
    return Fetched(path=path, sha256=digest)


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks so a large model never sits in memory twice."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _target(model_dir: Path, uri: str) -> Path:
    """A stable cache name per URI, so a restarted container does not mix two models up."""
    model_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return model_dir / f"{key}.onnx"


@contextlib.contextmanager
def _partial(target: Path) -> Iterator[Path]:
    """A temporary file next to `target`, renamed onto it when the block succeeds and removed
    whatever way it fails, so a partial download is never used nor left behind."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=".download-", suffix=".partial")
    os.close(fd)
    partial = Path(name)
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


class _AttemptError(Exception):
    """One download attempt failed in a way worth retrying (timeout, short body)."""


def _download_http(uri: str, model_dir: Path, *, timeout: float, retries: int) -> Path:
    """Up to 1 + `retries` attempts, each bounded by `timeout` seconds as a whole."""
    target = _target(model_dir, uri)
    location, authorization = _split_credentials(uri)
    shown = redact_uri(uri)
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            delay = min(2.0**attempt * 0.25, 10.0)
            log.warning("retrying model download in %.1fs: %s", delay, last_error)
            time.sleep(delay)
        try:
            _attempt(location, authorization, target, timeout)
            return target
        except urllib.error.HTTPError as exc:
            exc.close()
            last_error = f"HTTP {exc.code} from {shown}"
            if 400 <= exc.code < 500 and exc.code not in {408, 429}:
                break  # the server said no: retrying will not change its mind
        except _AttemptError as exc:
            last_error = f"{exc} ({shown})"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            last_error = _scrub(f"{type(exc).__name__} fetching {shown}: {exc}", uri)
        except ValueError as exc:  # a URI urllib refuses: no retry will fix it
            last_error = _scrub(f"cannot fetch {shown}: {exc}", uri)
            break
    raise ModelLoadError(f"cannot download the model: {last_error}")


def _attempt(location: str, authorization: str | None, target: Path, seconds: float) -> None:
    """One GET streamed into a temporary file, renamed onto `target` only when complete."""
    deadline = _Deadline(seconds)
    opener = urllib.request.build_opener(_HTTPHandler(deadline), _HTTPSHandler(deadline))
    request = urllib.request.Request(location, headers={"User-Agent": "modelserve"})
    if authorization is not None:
        request.add_unredirected_header("Authorization", authorization)
    try:
        with deadline, _partial(target) as partial, partial.open("wb") as out:
            with opener.open(request, timeout=seconds or None) as response:
                expected = _content_length(response)
                received = 0
                while chunk := response.read1(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
            if deadline.expired and (expected is None or received < expected):
                raise _AttemptError(f"the download did not finish within {seconds:g}s")
            if expected is not None and received < expected:
                raise _AttemptError(f"the body ended after {received} of {expected} bytes")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        if deadline.expired and not isinstance(exc, urllib.error.HTTPError):
            raise _AttemptError(f"the download did not finish within {seconds:g}s") from None
        raise


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length", "").strip()
    return int(value) if value.isdigit() else None


def _split_credentials(uri: str) -> tuple[str, str | None]:
    """(the URI without userinfo, a Basic Authorization header for it, or None)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None:
        return uri, None
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    netloc = parts.netloc.rpartition("@")[2]
    location = urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path, parts.query, parts.fragment)
    )
    return location, f"Basic {token}"


def _scrub(text: str, uri: str) -> str:
    """`text` (which may quote an exception that quotes the URI) with the URI's secrets
    replaced: its userinfo, password, query and fragment."""
    text = text.replace(uri, redact_uri(uri))
    parts = urllib.parse.urlsplit(uri)
    userinfo = parts.netloc.rpartition("@")[0]
    for secret in (userinfo, parts.password, parts.query, parts.fragment):
        if secret and len(secret) >= 4:  # shorter ones would garble the text, not hide much
            text = text.replace(secret, "[redacted]")
    return text


class _Deadline:
    """One attempt's time limit. The sockets the attempt opens are shut down when it passes,
    which wakes a read blocked on a server that trickles bytes (a per-read timeout never
    fires while bytes keep coming)."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire) if seconds > 0 else None
        if self._timer is not None:
            self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        if self._timer is not None:
            self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down when the deadline passes (at once if it has)."""
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing left to wake
        sock.shutdown(socket.SHUT_RDWR)


class _WatchedHTTP(http.client.HTTPConnection):
    """An HTTP connection whose socket the attempt's deadline can shut down."""

    def __init__(self, host: str, /, *, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        super().connect()
        self._deadline.watch(self.sock)


class _WatchedHTTPS(_WatchedHTTP, http.client.HTTPSConnection):
    """The same for HTTPS: the method order puts HTTPSConnection's TLS connect under the
    watch (the TLS handshake is bounded by the socket timeout alone)."""


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)

    def _connection(self, host: str, /, **kwargs: Any) -> http.client.HTTPConnection:
        return _WatchedHTTP(host, deadline=self._deadline, **kwargs)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        self._tls = ssl.create_default_context()  # honours SSL_CERT_FILE / SSL_CERT_DIR
        super().__init__(context=self._tls)
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)

    def _connection(self, host: str, /, **kwargs: Any) -> http.client.HTTPConnection:
        return _WatchedHTTPS(host, deadline=self._deadline, context=self._tls, **kwargs)


def _download_s3(bucket: str, key: str, model_dir: Path) -> Path:
    """Download with boto3 (credentials from the usual AWS environment); optional dependency."""
    try:
        import boto3  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ModelLoadError("s3:// model URIs need boto3: pip install boto3") from exc
    target = _target(model_dir, f"s3://{bucket}/{key}")
    try:
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
        with _partial(target) as partial:
            boto3.client("s3", endpoint_url=endpoint).download_file(bucket, key, str(partial))
    except Exception as exc:
        raise ModelLoadError(f"cannot download s3://{bucket}/{key}: {exc}") from exc
    return target
