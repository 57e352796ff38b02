"""Model URI → a verified local file.

Schemes: a plain path or file://, pvc://CLAIM/PATH (the claim mounted under `pvc_root`),
http(s):// (streamed to disk, retried with backoff, bounded by a timeout per try) and s3://
(boto3, imported only when used). The sha256 is computed on every file, pinned or not, so the
`model_info` metric always says which bytes are served; a pinned digest that differs refuses to
serve before ONNX Runtime ever parses the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .errors import ModelLoadError

log = logging.getLogger("modelserve.fetch")

CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class Fetched:
    """A model file on local disk and the sha256 of its bytes."""

    path: Path
    sha256: str


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
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in {"", "file"}:
        path = Path(urllib.parse.unquote(parsed.path) if scheme else uri)
    elif scheme == "pvc":
        path = pvc_root / parsed.netloc / urllib.parse.unquote(parsed.path).lstrip("/")
    elif scheme in {"http", "https"}:
        path = _download_http(uri, model_dir, timeout=timeout, retries=retries)
    elif scheme == "s3":
        path = _download_s3(parsed.netloc, parsed.path.lstrip("/"), model_dir)
    else:
        raise ModelLoadError(f"unsupported model URI scheme {scheme!r} in {uri}")
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path} (from {uri})")
    digest = file_sha256(path)
    if sha256 is not None and digest != sha256.lower():
        raise ModelLoadError(f"sha256 mismatch for {uri}: expected {sha256.lower()}, got {digest}")
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


def _download_http(uri: str, model_dir: Path, *, timeout: float, retries: int) -> Path:
    """Stream to a temporary file and rename it into place, so a partial file is never used."""
    target = _target(model_dir, uri)
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            delay = min(2.0**attempt * 0.25, 10.0)
            log.warning("retrying model download in %.1fs: %s", delay, last_error)
            time.sleep(delay)
        try:
            request = urllib.request.Request(uri, headers={"User-Agent": "modelserve"})
            with (
                urllib.request.urlopen(request, timeout=timeout) as response,
                tempfile.NamedTemporaryFile(dir=model_dir, delete=False) as out,
            ):
                try:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                except BaseException:
                    os.unlink(out.name)
                    raise
            os.replace(out.name, target)
            return target
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code} from {uri}"
            if 400 <= exc.code < 500 and exc.code not in {408, 429}:
                break  # the server said no: retrying will not change its mind
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            last_error = f"{type(exc).__name__} fetching {uri}: {exc}"
    raise ModelLoadError(f"cannot download the model: {last_error}")


def _download_s3(bucket: str, key: str, model_dir: Path) -> Path:
    """Download with boto3 (credentials from the usual AWS environment); optional dependency."""
    try:
        import boto3  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ModelLoadError("s3:// model URIs need boto3: pip install boto3") from exc
    target = _target(model_dir, f"s3://{bucket}/{key}")
    partial = target.with_suffix(".partial")
    try:
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
        boto3.client("s3", endpoint_url=endpoint).download_file(bucket, key, str(partial))
    except Exception as exc:
        raise ModelLoadError(f"cannot download s3://{bucket}/{key}: {exc}") from exc
    os.replace(partial, target)
    return target
