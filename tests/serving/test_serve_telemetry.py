"""The server keeps ONNX Runtime's telemetry off: no device id or event database written under
the home directory, and no warning line in its (JSON) log when the home is not writable."""

from __future__ import annotations

from pathlib import Path

import pytest
import servekit


def test_serving_writes_no_telemetry_store(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    # This process imported modelserve too: the server must set it itself, not inherit it.
    monkeypatch.delenv("ORT_DISABLE_TELEMETRY", raising=False)
    server = servekit.start(model_dir / "mlp.onnx", "--log-format", "json", log_dir=tmp_path,
                            env=env)  # fmt: skip
    try:
        with server.client() as client:
            assert client.get("/v2/models/mlp").status_code == 200
    finally:
        server.stop()
    written = [str(p.relative_to(home)) for p in home.rglob("*")]
    assert written == [], written
    assert "telemetry" not in server.logs()
