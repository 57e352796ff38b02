"""The analysis deciding from real data: real modelserve processes, a real Prometheus.

A good revision and a bad one (a model that fails requests, or a slow one) serve the same
load on loopback; Debian's Prometheus scrapes them with the `namespace` and `revision` labels a
PodMonitor would add; the operator's prometheus provider and judges read it back. (The pods
provider is proven end to end on the real node.)
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import save_model

from modeldeploy.api.spec import Analysis
from modeldeploy.core.analysis import Verdict
from modeldeploy.runtime.providers import MetricsProviders
from serving import servekit

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="needs Debian's prometheus package (.ci/run installs it)"
)
ROWS = 4
REQUESTS = 300


def lookup_model(path: Path, table_size: int) -> Path:
    """Looks up a table by the rounded sum of each row. With a small table, rows summing past
    its end make ONNX Runtime fail the inference: a model bug the server must report as 5xx."""
    table = numpy_helper.from_array(np.arange(table_size, dtype=np.float32), "table")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("ReduceSum", ["input", "axes"], ["total"], keepdims=0),
        helper.make_node("Cast", ["total"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "index"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "lookup",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch"])],
        [table, axes],
    )  # fmt: skip
    return save_model(graph, path)


def slow_model(path: Path, layers: int = 24, width: int = 1024) -> Path:
    """The same answer shape, but `layers` 1024x1024 matrix products per row (tens of ms)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, width)).astype(np.float32), "w_in"),
        numpy_helper.from_array((np.eye(width, dtype=np.float32)), "w"),
        numpy_helper.from_array(rng.standard_normal((width, 1)).astype(np.float32)[:, 0], "w_out"),
    ]
    nodes = [helper.make_node("MatMul", ["input", "w_in"], ["h0"])]
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "w"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("MatMul", [f"h{layers}", "w_out"], ["output"]))
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch"])],
        inits,
    )  # fmt: skip
    return save_model(graph, path)


def load(server: servekit.Server, seed: int) -> dict[int, int]:
    """REQUESTS single-row requests, rows of values 0-2 (sums 0-8), 8 at a time."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 3, size=(REQUESTS, 4)).astype(float)
    codes: dict[int, int] = {}
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def call(row: np.ndarray) -> int:
            body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                "data": row.tolist()}]}  # fmt: skip
            return client.post("/v2/models/m/infer", json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            for code in pool.map(call, rows):
                codes[code] = codes.get(code, 0) + 1
    return codes


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[bytes]) -> None:
        self.url, self.process = url, process

    def scraped(self, job_count: int) -> bool:
        try:
            answer = httpx.get(f"{self.url}/api/v1/query",
                               params={"query": "sum(up)"}, timeout=2).json()  # fmt: skip
        except httpx.TransportError:
            return False
        result = answer.get("data", {}).get("result", [])
        return bool(result) and float(result[0]["value"][1]) >= job_count


@pytest.fixture
def servers(tmp_path) -> Iterator[dict[str, servekit.Server]]:
    started: dict[str, servekit.Server] = {}
    # Rows sent sum to 0-8: a table of 64 always answers, one of 5 fails about half the rows.
    models = {"good": lookup_model(tmp_path / "good.onnx", 64),
              "failing": lookup_model(tmp_path / "failing.onnx", 5),
              "slow": slow_model(tmp_path / "slow.onnx")}  # fmt: skip
    try:
        for name, path in models.items():
            started[name] = servekit.start(path, "--name", "m", "--max-batch-size", "1",
                                           log_dir=tmp_path)  # fmt: skip
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture
def prometheus(servers, tmp_path) -> Iterator[Prometheus]:
    """Prometheus on a free loopback port, scraping each server every second."""
    port = servekit.free_port()
    jobs = "\n".join(
        f"""  - job_name: {name}
    scrape_interval: 1s
    static_configs:
      - targets: ["127.0.0.1:{server.port}"]
        labels: {{namespace: ml, revision: {name}}}"""
        for name, server in servers.items()
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n{jobs}\n")
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    prom = Prometheus(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 60
        while not prom.scraped(len(servers)):
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Prometheus never scraped every server"
            time.sleep(0.5)
        yield prom
    finally:
        process.terminate()
        process.wait(timeout=30)


def decide(prom: Prometheus, judge: str, canary: str, stable: str | None):
    spec = Analysis.model_validate({
        "interval": "1m", "minRequests": 100, "judge": judge,
        "metrics": [{"name": "error-rate", "max": 0.01}, {"name": "latency-p99", "max": 50}],
        "provider": {"prometheus": {"address": prom.url}},
    })  # fmt: skip
    providers = MetricsProviders(kube=None)  # type: ignore[arg-type]  # Prometheus needs no kube
    return providers.check("ml", "m", spec, canary, stable, 0, datetime.now(UTC))


def warm_up(server: servekit.Server) -> None:
    """One request of each kind, so every counter series exists before the measured load:
    Prometheus' increase() cannot see what a series counted before its first scrape."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for row in ([0, 0, 0, 0], [2, 2, 2, 2]):
            body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": row}]}
            client.post("/v2/models/m/infer", json=body)


def test_judges_decide_from_real_scraped_metrics(servers, prometheus):
    for server in servers.values():
        warm_up(server)
    time.sleep(2.5)
    codes = {name: load(server, seed) for seed, (name, server) in enumerate(servers.items())}
    assert codes["good"] == {200: REQUESTS}
    assert codes["failing"].get(500, 0) + codes["failing"].get(503, 0) > REQUESTS // 4, codes
    time.sleep(3)  # two more scrapes after the last request

    good = decide(prometheus, "threshold", "good", None)
    assert good is not None
    assert good.verdict == Verdict.PASSED, good
    by_metric = {r.metric: r for r in good.results}
    assert by_metric["error-rate"].canary_value == 0
    assert by_metric["error-rate"].requests >= REQUESTS * 0.9

    failing = decide(prometheus, "threshold", "failing", "good")
    results = {r.metric: r for r in failing.results}
    assert results["error-rate"].verdict == Verdict.FAILED
    assert results["error-rate"].canary_value > 0.2

    slow = decide(prometheus, "statistical", "slow", "good")
    results = {r.metric: r for r in slow.results}
    assert slow.verdict == Verdict.FAILED
    assert results["latency-p99"].verdict == Verdict.FAILED
    assert results["latency-p99"].canary_value > results["latency-p99"].stable_value
    assert results["latency-p99"].p_value is not None
    assert results["latency-p99"].p_value < 0.01
    assert results["error-rate"].verdict == Verdict.PASSED
