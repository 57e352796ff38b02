"""Start-up: fetch from every URI scheme, verify sha256, refuse bad models, Ready only after
the warm-up, flags and environment variables."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import servekit


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def never_ready(server: servekit.Server, timeout: float = 20) -> int:
    """Wait for the process to exit, asserting it never answered Ready; returns the code."""
    deadline = time.monotonic() + timeout
    while server.process.poll() is None:
        assert time.monotonic() < deadline, server.logs()
        try:
            ready = httpx.get(f"{server.url}/v2/health/ready", timeout=1)
            assert ready.status_code == 503, "a bad model must never be Ready"
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    return server.process.returncode


@pytest.fixture(scope="module")
def http_models(model_dir: Path) -> Iterator[tuple[str, threading.Event]]:
    """An HTTP server for the model folder; `/slow/...` waits for an event before answering."""
    release = threading.Event()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(model_dir), **kwargs)

        def do_GET(self) -> None:
            if self.path.startswith("/slow/"):
                release.wait(10)
                self.path = self.path[len("/slow") :]
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", release
    release.set()
    httpd.shutdown()


def test_sha256_mismatch_never_serves(model_dir: Path, log_dir: Path) -> None:
    server = servekit.start(model_dir / "mlp.onnx", "--sha256", "0" * 64,
                            log_dir=log_dir, wait_ready=False)  # fmt: skip
    assert never_ready(server) != 0
    logs = server.logs()
    assert "sha256 mismatch" in logs
    assert f"got {sha256(model_dir / 'mlp.onnx')}" in logs


def test_corrupt_model_never_serves(tmp_path: Path, log_dir: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07this is not a protobuf of an ONNX model" * 10)
    server = servekit.start(corrupt, "--sha256", sha256(corrupt), log_dir=log_dir,
                            wait_ready=False)  # fmt: skip
    assert never_ready(server) != 0
    assert "not a valid ONNX model" in server.logs()


def test_missing_model_file(tmp_path: Path, log_dir: Path) -> None:
    server = servekit.start(tmp_path / "absent.onnx", log_dir=log_dir, wait_ready=False)
    assert never_ready(server) != 0
    assert "model file not found" in server.logs()


def test_file_uri_with_matching_sha256(model_dir: Path, log_dir: Path) -> None:
    path = model_dir / "mlp.onnx"
    server = servekit.start(f"file://{path}", "--sha256", sha256(path).upper(), log_dir=log_dir)
    assert httpx.get(f"{server.url}/v2/models/mlp").status_code == 200
    assert server.stop() == 0


def test_pvc_uri(model_dir: Path, log_dir: Path) -> None:
    server = servekit.start("pvc://models0/mlp.onnx", "--pvc-root", str(model_dir.parent),
                            "--name", "fraud", log_dir=log_dir)  # fmt: skip
    assert httpx.get(f"{server.url}/v2/models/fraud/ready").json() == {
        "name": "fraud",
        "ready": True,
    }
    assert server.stop() == 0


def test_http_download_live_before_ready(
    http_models: tuple[str, threading.Event], model_dir: Path, log_dir: Path
) -> None:
    base, release = http_models
    release.clear()
    server = servekit.start(f"{base}/slow/mlp.onnx", "--sha256", sha256(model_dir / "mlp.onnx"),
                            log_dir=log_dir, wait_ready=False)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:  # listening while the download hangs: live, not ready, infer 503
            try:
                live = httpx.get(f"{server.url}/v2/health/live", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, server.logs()
                time.sleep(0.05)
        assert live.status_code == 200
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 503
        loading = httpx.post(f"{server.url}/v2/models/mlp/infer", json={})
        assert loading.status_code == 503
        assert loading.json()["error"] == "the model is still loading"
        assert loading.headers["retry-after"] == "1"
        release.set()
        servekit.wait_until_ready(server)
        assert httpx.get(f"{server.url}/v2/models/mlp").json()["name"] == "mlp"
    finally:
        release.set()
        assert server.stop() == 0


def test_http_404_fails_fast(http_models: tuple[str, threading.Event], log_dir: Path) -> None:
    base, _ = http_models
    server = servekit.start(f"{base}/absent.onnx", "--download-retries", "2", log_dir=log_dir,
                            wait_ready=False)  # fmt: skip
    assert never_ready(server) != 0
    assert "HTTP 404" in server.logs()


def test_unsupported_scheme(log_dir: Path) -> None:
    server = servekit.start("gs://bucket/model.onnx", log_dir=log_dir, wait_ready=False)
    assert never_ready(server) != 0
    assert "unsupported model URI scheme 'gs'" in server.logs()


def test_help_lists_flags_and_environment() -> None:
    out = subprocess.run([sys.executable, "-m", "modelserve", "--help"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    for text in ("--max-batch-size", "MODELSERVE_MAX_BATCH_SIZE", "--jwt-public-key-file",
                 "--tls-cert", "--drain-timeout", "--reject-nonfinite"):  # fmt: skip
        assert text in out


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "--model (or MODELSERVE_MODEL) is required"),
        (["--model", "m.onnx", "--max-batch-size", "0"], {}, "expected an integer >= 1"),
        (["--model", "m.onnx"], {"MODELSERVE_PORT": "http"}, "invalid int value"),
        (["--model", "m.onnx", "--tls-cert", "c.pem"], {}, "--tls-cert and --tls-key go together"),
        (["--model", "m.onnx", "--graph-optimization", "max"], {}, "invalid choice"),
    ],
)
def test_bad_settings_exit_2(args: list[str], env: dict[str, str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "modelserve", *args], capture_output=True,
                            text=True, env={"PATH": "/usr/bin", **env}, check=False)  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr


def test_s3_needs_boto3(log_dir: Path) -> None:
    """boto3 is optional: without it an s3:// URI fails with an instruction, not a traceback."""
    import importlib.util

    if importlib.util.find_spec("boto3") is not None:
        pytest.skip("boto3 is installed: the message for its absence cannot show")
    server = servekit.start("s3://bucket/model.onnx", log_dir=log_dir, wait_ready=False)
    assert never_ready(server) != 0
    assert "s3:// model URIs need boto3" in server.logs()
