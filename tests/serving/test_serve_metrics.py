"""/metrics: every series the rollout analysis needs is present, labelled, and increasing."""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
import servekit

LABELS = 'model="mlp",version="3"'


def value(metrics: str, name: str, labels: str = "") -> float:
    """One sample's value; labels is a fragment that must appear inside the braces."""
    for line in metrics.splitlines():
        if line.startswith(name + "{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} with {labels} not in:\n{metrics}")


def total(metrics: str, name: str, labels: str) -> float:
    """The sum over every sample of `name` whose labels contain `labels`."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(name + "{") and labels in line
    )


def test_metrics_present_labelled_and_increasing(model_dir: Path, log_dir: Path) -> None:
    model = model_dir / "mlp.onnx"
    server = servekit.start(model, "--version", "3", "--drift-max-features", "2", log_dir=log_dir)
    rows = np.array([[1, 10, 5, 5], [3, 30, 5, 5], [5, 50, 5, 5]], dtype=np.float32)
    body = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32",
                        "data": rows.tolist()}]}  # fmt: skip
    try:
        with server.client() as client:
            before = client.get("/metrics")
            for _ in range(3):
                assert client.post("/v2/models/mlp/infer", json=body).status_code == 200
            assert client.post("/v1/models/mlp:predict", json={"instances": [[0] * 4]}).is_success
            assert client.post("/v2/models/mlp/infer", json={}).status_code == 400
            after = client.get("/metrics")
    finally:
        server.stop()
    assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
    b, a = before.text, after.text
    count = "modelserve_request_duration_seconds_count"
    assert "# TYPE modelserve_requests_total counter" in b
    assert "modelserve_requests_total{" not in b  # nothing answered yet
    assert total(a, "modelserve_requests_total", 'code="200"') == 4
    assert value(a, "modelserve_requests_total", 'code="400"') == 1
    assert value(a, "modelserve_requests_total", 'protocol="v1"') == 1
    assert re.search(r'modelserve_requests_total\{.*code="200".*protocol="v2".*\} 3\.0', a)
    assert value(a, count, 'protocol="v2"') == 4  # the 400 is timed too
    assert value(a, "modelserve_inference_duration_seconds_count", LABELS) == 4
    assert value(a, "modelserve_batch_size_sum", LABELS) == 10
    # Buckets fine enough for a p99 between 1 ms and 10 s.
    buckets = re.findall(r'modelserve_request_duration_seconds_bucket\{.*le="([^"]+)"', a)
    bounds = sorted({float(x) for x in buckets if x != "+Inf"})
    assert bounds[0] <= 0.001
    assert bounds[-1] >= 10
    fine = [b for b in bounds if b >= 0.001]
    assert all(hi / lo <= 1.6 for lo, hi in itertools.pairwise(fine))
    # prometheus_client's `_created` samples: the operator reads a change as a restart.
    assert value(a, "modelserve_requests_created", 'code="200"') > 1e9
    assert value(a, "modelserve_request_duration_seconds_created", 'protocol="v2"') > 1e9
    assert value(a, "modelserve_queue_depth", LABELS) == 0
    assert value(a, "modelserve_inflight_requests", LABELS) == 0
    assert value(a, "modelserve_ready", LABELS) == 1
    assert value(a, "modelserve_model_load_seconds", LABELS) > 0
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert value(a, "modelserve_model_info", f'sha256="{digest}"') == 1
    assert 'platform="onnxruntime_onnx"' in a
    # Drift statistics over the 10 rows sent (3 x 3 rows + 1 row of zeros), first 2 features.
    assert value(a, "modelserve_input_rows", 'input="input"') == 10
    assert value(a, "modelserve_input_feature_mean", 'feature="0"') == 2.7  # (3·9)/10
    assert value(a, "modelserve_input_feature_mean", 'feature="1"') == 27.0
    variance = value(a, "modelserve_input_feature_variance", 'feature="0"')
    assert variance == pytest.approx(np.var([1, 3, 5] * 3 + [0]))
    assert value(a, "modelserve_input_feature_sum_squares", 'feature="0"') == 3 * (1 + 9 + 25)
    assert 'feature="2"' not in a


def test_metrics_need_no_auth(model_dir: Path, log_dir: Path) -> None:
    server = servekit.start(model_dir / "mlp.onnx", "--auth-token", "s3cret", log_dir=log_dir)
    try:
        assert httpx.get(f"{server.url}/metrics").status_code == 200
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    finally:
        server.stop()
