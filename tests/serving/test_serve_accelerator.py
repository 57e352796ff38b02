"""GPU execution providers (issue 18): `--accelerator cuda|tensorrt` asks ONNX Runtime for them,
and where they cannot run (this machine: the CPU-only onnxruntime, no GPU) the model is served
on the CPU and says so, in its metadata, its config, a gauge and the log, instead of crash
looping or quietly running slower than its owner thinks.

The selection itself is pure (modelserve.accelerators, doctested there); these tests run the
real server on the real ONNX Runtime build this machine has. `hack/gpu-check.sh` is the same
check for a machine with a GPU, where the answer must be CUDAExecutionProvider.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import servekit

from modelserve.accelerators import CPU, CUDA, TENSORRT, choose, confirm

ROW = [[0.5, -1.0, 2.0, 0.25]]
BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROW[0]}]}

needs_cpu_only_build = pytest.mark.skipif(
    CUDA in ort.get_available_providers(),
    reason="this onnxruntime has CUDA: hack/gpu-check.sh is the test for such a machine",
)


def answer(server: servekit.Server) -> list[float]:
    with server.client() as client:
        reply = client.post("/v2/models/mlp/infer", json=BODY)
    assert reply.status_code == 200, reply.text
    return [float(v) for v in reply.json()["outputs"][0]["data"]]


def test_choice_keeps_the_cpu_last_and_names_what_is_missing() -> None:
    assert choose("cpu", [CUDA, CPU]).providers == (CPU,)
    assert choose("tensorrt", [TENSORRT, CUDA, CPU]).providers == (TENSORRT, CUDA, CPU)
    assert choose("tensorrt", [TENSORRT, CUDA, CPU]).fallback == ""
    missing = choose("tensorrt", [CPU])
    assert missing.providers == (CPU,)
    assert "TensorrtExecutionProvider is not in this onnxruntime build" in missing.fallback
    # ONNX Runtime had CUDA but could not start it: the session says what it registered.
    started = confirm(choose("cuda", [CUDA, CPU]), [CPU])
    assert (started.provider, bool(started.fallback)) == (CPU, True)
    assert confirm(choose("cpu", [CPU]), [CPU]).fallback == ""


@needs_cpu_only_build
@pytest.mark.parametrize("accelerator", ["cuda", "tensorrt"])
def test_a_missing_accelerator_serves_on_the_cpu_and_says_so(
    model_dir: Path, log_dir: Path, accelerator: str
) -> None:
    plain = servekit.start(model_dir / "mlp.onnx", "--name", "mlp", log_dir=log_dir)
    asked = servekit.start(model_dir / "mlp.onnx", "--name", "mlp", log_dir=log_dir,
                           env={"MODELSERVE_ACCELERATOR": accelerator})  # fmt: skip
    try:
        assert np.allclose(answer(asked), answer(plain), rtol=1e-6)  # served, correctly
        with asked.client() as client:
            metadata = client.get("/v2/models/mlp").json()
            config = client.get("/v2/models/mlp/config").json()
            metrics = client.get("/metrics").text
        parameters = metadata["parameters"]
        assert parameters["execution_provider"] == CPU
        assert "is not in this onnxruntime build" in parameters["accelerator_fallback"]
        assert config["parameters"]["execution_provider"] == {"string_value": CPU}
        assert 'modelserve_accelerator_fallback{model="mlp",version="1"} 1.0' in metrics
        assert (f'modelserve_execution_provider_info{{model="mlp",provider="{CPU}",'
                f'requested="{accelerator}",version="1"}} 1.0') in metrics  # fmt: skip
        assert f"--accelerator {accelerator} is not in use" in asked.logs()
    finally:
        asked.stop()
        plain.stop()


@pytest.mark.skipif(
    CUDA not in ort.get_available_providers() or shutil.which("nvidia-smi") is None,
    reason="needs onnxruntime-gpu and a GPU (hack/gpu-check.sh sets that up on a GPU machine)",
)
def test_on_a_gpu_the_model_runs_on_cuda_and_answers_as_on_the_cpu(
    model_dir: Path, log_dir: Path
) -> None:
    plain = servekit.start(model_dir / "mlp.onnx", "--name", "mlp", log_dir=log_dir)
    gpu = servekit.start(model_dir / "mlp.onnx", "--name", "mlp", "--accelerator", "cuda",
                         log_dir=log_dir, timeout=120)  # fmt: skip
    try:
        with gpu.client() as client:
            config = client.get("/v2/models/mlp/config").json()
            metrics = client.get("/metrics").text
        assert config["parameters"]["execution_provider"] == {"string_value": CUDA}, gpu.logs()
        assert "accelerator_fallback" not in config["parameters"]
        assert 'modelserve_accelerator_fallback{model="mlp",version="1"} 0.0' in metrics
        assert np.allclose(answer(gpu), answer(plain), rtol=1e-4, atol=1e-5)
    finally:
        gpu.stop()
        plain.stop()


def test_the_default_runs_on_the_cpu_with_no_fallback(model_dir: Path, log_dir: Path) -> None:
    server = servekit.start(model_dir / "mlp.onnx", "--name", "mlp", log_dir=log_dir)
    try:
        with server.client() as client:
            metadata = client.get("/v2/models/mlp").json()
            config = client.get("/v2/models/mlp/config").json()
            metrics = client.get("/metrics").text
        assert "parameters" not in metadata  # a healthy start keeps the plain OIP object
        assert config["parameters"]["execution_provider"] == {"string_value": CPU}
        assert 'modelserve_accelerator_fallback{model="mlp",version="1"} 0.0' in metrics
    finally:
        server.stop()


def test_an_unknown_accelerator_is_refused_naming_the_setting(tmp_path: Path) -> None:
    for args, env in ((["--accelerator", "rocm"], {}), ([], {"MODELSERVE_ACCELERATOR": "rocm"})):
        result = subprocess.run(
            [sys.executable, "-m", "modelserve", "--model", str(tmp_path / "m.onnx"), *args],
            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **env}, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert "--accelerator" in result.stderr
        assert (
            "cpu, cuda, tensorrt" in result.stderr or "'cpu', 'cuda', 'tensorrt'" in result.stderr
        )
