"""Request bodies with a Content-Encoding: every gzip member decoded, within the size limit.

(The HTTP details real clients trip on; more of them join this module.)
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import servekit

BODY = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
)


@pytest.fixture(scope="module")
def held_server(model_dir: Path, log_dir: Path) -> Iterator[servekit.Server]:
    """A 1000-byte body limit, to go over easily."""
    server = servekit.start(model_dir / "mlp.onnx", "--max-body-bytes", "1000", log_dir=log_dir)
    yield server
    server.stop()


# --- Content-Encoding ----------------------------------------------------------------------


def test_multi_member_gzip_body_is_decoded_completely(mlp_server: servekit.Server) -> None:
    """Concatenated gzip members are one gzip stream (RFC 1952 2.2), as `cat a.gz b.gz` makes."""
    packed = gzip.compress(BODY[:30]) + gzip.compress(BODY[30:])
    with mlp_server.client() as client:
        response = client.post("/v2/models/mlp/infer", content=packed,
                               headers={"Content-Encoding": "gzip"})  # fmt: skip
        plain = client.post("/v2/models/mlp/infer", content=BODY)
    assert response.status_code == 200, response.text
    assert response.json() == plain.json()


def test_multi_member_gzip_keeps_the_decompressed_size_limit(
    held_server: servekit.Server,
) -> None:
    """Two members under the 1000-byte limit each, over it together: 413, not a cut body."""
    padded = BODY[:-1] + b" " * 1200 + b"}"
    packed = gzip.compress(padded[:600]) + gzip.compress(padded[600:])
    assert len(packed) < 1000
    response = httpx.post(f"{held_server.url}/v2/models/mlp/infer", content=packed,
                          headers={"Content-Encoding": "gzip"})  # fmt: skip
    assert response.status_code == 413, response.text
    assert "decompressed body exceeds the limit of 1000 bytes" in response.json()["error"]


def test_truncated_gzip_body_is_refused(mlp_server: servekit.Server) -> None:
    packed = gzip.compress(BODY)[:-12]
    response = httpx.post(f"{mlp_server.url}/v2/models/mlp/infer", content=packed,
                          headers={"Content-Encoding": "gzip"})  # fmt: skip
    assert response.status_code == 400
    assert "truncated" in response.json()["error"]
