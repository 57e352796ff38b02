"""Models as common exporters write them, served with default flags: a scikit-learn classifier
exported by skl2onnx with its default ZipMap (a sequence of maps next to the label tensor)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import onnx_models
import onnxruntime as ort
import servekit
import tritonclient.http as triton


def test_a_zipmap_classifier_serves_its_tensor_outputs(tmp_path: Path, log_dir: Path) -> None:
    """skl2onnx's default export used to be refused at start-up ("has type seq(map(...)),
    which is not served"), so the pod crash-looped on the most common scikit-learn model. The
    tensor outputs now serve; the map output is left out of the metadata, named in its
    parameters and in one warning with the way to export it as a tensor, and a request asking
    for it is a 400 saying why."""
    path = onnx_models.zipmap_classifier(tmp_path / "classifier.onnx")
    server = servekit.start(path, log_dir=log_dir)
    rows = np.array([[0.1, 2.0, 0.3], [3.0, 0.0, 1.0], [0.0, 0.5, 4.0]], np.float32)
    try:
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        metadata = client.get_model_metadata("classifier")
        config = client.get_model_config("classifier")
        tensor = triton.InferInput("X", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        labels = client.infer("classifier", [tensor]).as_numpy("label")
        asked = httpx.post(f"{server.url}/v2/models/classifier/infer", json={
            "inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
            "outputs": [{"name": "probabilities"}],
        })  # fmt: skip
    finally:
        assert server.stop() == 0
    expected = ort.InferenceSession(str(path)).run(["label"], {"X": rows})[0]
    assert labels is not None
    np.testing.assert_array_equal(labels, expected)
    assert [o["name"] for o in metadata["outputs"]] == ["label"]
    assert "probabilities" in metadata["parameters"]["unserved_outputs"]
    assert [o["name"] for o in config["output"]] == ["label"]
    assert asked.status_code == 400, asked.text
    assert "seq(map(int64,tensor(float)))" in asked.json()["error"]
    warnings = [line for line in server.logs().splitlines() if " WARNING " in line]
    assert len(warnings) == 1, warnings
    assert "probabilities (seq(map(int64,tensor(float))))" in warnings[0]
    assert "zipmap" in warnings[0]
    assert "Traceback" not in server.logs()


def test_a_model_with_only_a_map_output_is_a_clear_startup_error(
    tmp_path: Path, log_dir: Path
) -> None:
    """Nothing to serve: exit 1 with one error line naming the output and its type."""
    path = onnx_models.zipmap_classifier(tmp_path / "maps.onnx", with_label=False)
    run = subprocess.run(
        [sys.executable, "-m", "modelserve", "--model", str(path), "--port", "0",
         "--model-dir", str(log_dir / "cache")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "'probabilities'" in run.stderr
    assert "seq(map(int64,tensor(float)))" in run.stderr
    assert "Traceback" not in run.stderr
