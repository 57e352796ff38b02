"""The digest the operator records in the status is the one a real modelserve reports.

The operator reads each Ready pod's `/metrics` through the pod proxy, with no credentials, and
parses `modelserve_model_info`'s `sha256` label (modeldeploy.core.digests.reported). Here the
same parser reads a real server's answer, pinned and unpinned, and behind inference auth.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import servekit

from modeldeploy.core.digests import judge, reported


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_unpinned_server_reports_the_digest_it_computed(mlp_server, model_dir: Path) -> None:
    metrics = httpx.get(f"{mlp_server.url}/metrics").text
    assert reported(metrics) == _sha256(model_dir / "mlp.onnx")


def test_a_pinned_server_behind_auth_reports_the_pin_to_a_scrape_without_credentials(
    model_dir: Path, log_dir: Path
) -> None:
    model = model_dir / "fixed.onnx"
    pin = _sha256(model)
    server = servekit.start(model, "--sha256", pin.upper(), "--auth-token", "s3cret",
                            "--metrics-token", "scrape", log_dir=log_dir)  # fmt: skip
    try:
        answer = httpx.get(f"{server.url}/metrics")  # as the operator asks: no token
        assert answer.status_code == 200
        assert reported(answer.text) == pin
        # What plan() makes of two such pods: the pin, no finding.
        digest, findings = judge("fixed-1", {"pod-a": reported(answer.text), "pod-b": pin}, pin)
        assert digest is not None
        assert (digest.sha256, findings) == (pin, [])
    finally:
        server.stop()
