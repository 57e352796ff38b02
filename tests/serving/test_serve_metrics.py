"""/metrics: every series the rollout analysis needs is present, labelled, and increasing."""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from pathlib import Path

import httpx
import jwt
import numpy as np
import onnx_models
import orjson
import pytest
import servekit
from onnx import TensorProto, helper

from modeldeploy.core.analysis.samples import TRACKED_SAMPLES, parse_exposition

LABELS = 'model="mlp",version="3"'
INFER = "/v2/models/mlp/infer"


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


# Values no other series holds: if any of them, or what they sum or square to, shows up in an
# unauthenticated scrape, a request's content leaked.
SECRET_ROW = [4242.125, -7373.5, 9191.25, 31337.0]
SECRET_BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                           "data": SECRET_ROW}]}  # fmt: skip
HS256_KEY = "a-long-enough-hs256-secret-for-the-metrics-tests"
PAYLOAD_FAMILIES = ("modelserve_input_", "modelserve_drift_")


def sample_values(text: str) -> set[float]:
    return {float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] not in "#"}


def assert_reveals_no_payload(text: str) -> None:
    names = {line.split(" ")[2] if line.startswith("#") else line for line in text.splitlines()}
    assert not [name for name in names if name.startswith(PAYLOAD_FAMILIES)]
    derived = {abs(v) for v in SECRET_ROW} | {v * v for v in SECRET_ROW}
    assert not derived & {abs(v) for v in sample_values(text)}
    assert "4242" not in text
    assert "31337" not in text


def assert_drift_is_the_secret_row(text: str) -> None:
    assert value(text, "modelserve_input_rows", 'input="input"') == 1
    for index, secret in enumerate(SECRET_ROW):
        feature = f'feature="{index}"'
        assert value(text, "modelserve_input_feature_sum", feature) == secret
        assert value(text, "modelserve_input_feature_mean", feature) == secret


def bearer(kind: str) -> tuple[list[str], str]:
    """Server flags for one kind of inference auth, and a credential that passes it."""
    if kind == "token":
        return ["--auth-token", "t0ken"], "Bearer t0ken"
    claims = {"sub": "client", "exp": int(time.time()) + 300}
    return ["--jwt-secret", HS256_KEY], "Bearer " + jwt.encode(claims, HS256_KEY, "HS256")


@pytest.mark.parametrize("kind", ["token", "jwt"])
def test_an_unauthenticated_scrape_reveals_no_payload(
    model_dir: Path, log_dir: Path, kind: str
) -> None:
    """With auth on, /metrics without credentials keeps serving what Prometheus and the
    operator's pods provider need, and nothing computed from request values: an anonymous
    reader who scrapes before and after an authenticated request learns nothing of its values.
    The inference credential and the dedicated scrape token both read everything."""
    flags, credential = bearer(kind)
    server = servekit.start(model_dir / "mlp.onnx", *flags, "--metrics-token", "scr4pe",
                            log_dir=log_dir)  # fmt: skip
    try:
        with server.client() as client:
            before = client.get("/metrics")
            inferred = client.post(INFER, json=SECRET_BODY, headers={"Authorization": credential})
            after = client.get("/metrics")
            with_scrape_token = client.get("/metrics", headers={"Authorization": "Bearer scr4pe"})
            with_inference = client.get("/metrics", headers={"Authorization": credential})
            wrong = client.get("/metrics", headers={"Authorization": "Bearer wrong"})
            # The scrape token reads metrics; it is no inference credential.
            scrape_token_infer = client.post(
                INFER, json=SECRET_BODY, headers={"Authorization": "Bearer scr4pe"}
            )
    finally:
        server.stop()
    assert inferred.status_code == 200, inferred.text
    for anonymous in (before, after):
        assert anonymous.status_code == 200
        assert_reveals_no_payload(anonymous.text)
    # What the operator's pods provider reads, read the way it reads it, without credentials.
    series = parse_exposition(after.text, samples=TRACKED_SAMPLES)
    assert {name for name, _ in series} == TRACKED_SAMPLES
    assert value(after.text, "modelserve_requests_total", 'code="200"') == 1
    assert value(after.text, "modelserve_request_duration_seconds_count", 'protocol="v2"') == 1
    for public in ("modelserve_batch_size_count", "modelserve_inflight_requests",
                   "modelserve_queue_depth", "modelserve_model_load_seconds"):  # fmt: skip
        value(after.text, public)
    for full in (with_scrape_token, with_inference):
        assert full.status_code == 200
        assert_drift_is_the_secret_row(full.text)
        assert value(full.text, "modelserve_requests_total", 'code="200"') == 1
    assert wrong.status_code == 401
    assert "invalid" in wrong.json()["error"]
    assert scrape_token_infer.status_code == 401


def test_a_scrape_token_alone_guards_the_drift_families(model_dir: Path, log_dir: Path) -> None:
    """Inference open, but a scrape token set: its owner asked for drift to be private."""
    server = servekit.start(model_dir / "mlp.onnx", log_dir=log_dir,
                            env={"MODELSERVE_METRICS_TOKEN": "scr4pe\n"})  # fmt: skip
    try:
        with server.client() as client:
            assert client.post(INFER, json=SECRET_BODY).status_code == 200
            anonymous = client.get("/metrics")
            full = client.get("/metrics", headers={"Authorization": "Bearer scr4pe"})
    finally:
        server.stop()
    assert_reveals_no_payload(anonymous.text)
    assert_drift_is_the_secret_row(full.text)


def test_drift_metrics_can_be_turned_off(model_dir: Path, log_dir: Path) -> None:
    """An open server has no secret to guard /metrics with: --drift-metrics=false is how its
    owner keeps request values out of it."""
    server = servekit.start(model_dir / "mlp.onnx", "--drift-metrics", "false", log_dir=log_dir)
    try:
        with server.client() as client:
            assert client.post(INFER, json=SECRET_BODY).status_code == 200
            text = client.get("/metrics").text
    finally:
        server.stop()
    assert_reveals_no_payload(text)
    assert value(text, "modelserve_requests_total", 'code="200"') == 1


def test_non_finite_inputs_never_poison_the_drift_statistics(
    model_dir: Path, log_dir: Path
) -> None:
    """One NaN or Inf folded into the running sums would make every later mean and variance
    NaN for the life of the process. Rows holding one are left out and the values counted."""
    server = servekit.start(model_dir / "mlp.onnx", "--drift-max-features", "4", log_dir=log_dir)
    poisoned = np.array([[np.nan, 1, np.inf, 2], [-np.inf, 1, 1, 1]], dtype=np.float32)
    header = orjson.dumps({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 32}}]})  # fmt: skip
    try:
        with server.client() as client:
            length = {"Inference-Header-Content-Length": str(len(header))}
            sent = client.post(INFER, content=header + poisoned.tobytes(), headers=length)
            assert sent.status_code == 200, sent.text
            finite = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                                  "data": [1, 2, 3, 4, 3, 4, 5, 6]}]}  # fmt: skip
            assert client.post(INFER, json=finite).status_code == 200
            text = client.get("/metrics").text
    finally:
        server.stop()
    assert value(text, "modelserve_input_rows", 'input="input"') == 2
    means = [value(text, "modelserve_input_feature_mean", f'feature="{i}"') for i in range(4)]
    assert means == [2.0, 3.0, 4.0, 5.0]
    variances = [value(text, "modelserve_input_feature_variance", f'feature="{i}"')
                 for i in range(4)]  # fmt: skip
    assert variances == [1.0, 1.0, 1.0, 1.0]
    assert value(text, "modelserve_drift_nonfinite_values_total", 'input="input"') == 3


def test_huge_finite_inputs_never_poison_the_drift_statistics(
    tmp_path: Path, log_dir: Path
) -> None:
    """An FP64 value of 1e200 is finite, but its square overflows the float64 running sum of
    squares to Inf, and every later variance would read Inf (or NaN) for the life of the
    process. Such rows are left out like non-finite ones, and their values counted."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])], "wide",
        [helper.make_tensor_value_info("input", TensorProto.DOUBLE, ["batch", 2])],
        [helper.make_tensor_value_info("output", TensorProto.DOUBLE, ["batch", 2])],
    )  # fmt: skip
    model = onnx_models.save_graph(graph, tmp_path / "mlp.onnx")  # the name INFER calls
    server = servekit.start(model, log_dir=log_dir)
    try:
        with server.client() as client:
            for data in ([1e200, 1.0], [1.0, 2.0], [3.0, 4.0]):
                body = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64",
                                    "data": data}]}  # fmt: skip
                sent = client.post(INFER, json=body)
                assert sent.status_code == 200, sent.text
                assert sent.json()["outputs"][0]["data"] == data  # served, whatever its size
            text = client.get("/metrics").text
    finally:
        server.stop()
    assert value(text, "modelserve_input_rows", 'input="input"') == 2
    variances = [value(text, "modelserve_input_feature_variance", f'feature="{i}"')
                 for i in range(2)]  # fmt: skip
    assert variances == [1.0, 1.0]
    assert value(text, "modelserve_drift_nonfinite_values_total", 'input="input"') == 1
