"""Fixtures for the serving tests: generated models and real modelserve processes.

Servers shared by many tests start once per session; tests that need special flags start their
own with `servekit.start`. Every server listens on 127.0.0.1 on a free port.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import onnx_models
import pytest
import servekit

# A script run by KServe's own virtualenv, not a test module: `--doctest-modules` (make test)
# would import it here, where kserve is deliberately not installed.
collect_ignore = ["kserve_client.py"]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with every test model, generated once."""
    return onnx_models.write_models(
        tmp_path_factory.mktemp("models"),
        servekit.mlp, servekit.multi, servekit.strings,
        servekit.fixed, servekit.ragged, servekit.flat,
    )  # fmt: skip


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where server logs go (printed by assertions when a server misbehaves)."""
    return tmp_path_factory.mktemp("logs")


def _serve(model: Path, log_dir: Path, *args: str) -> Iterator[servekit.Server]:
    server = servekit.start(model, *args, log_dir=log_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlp_server(model_dir: Path, log_dir: Path) -> Iterator[servekit.Server]:
    """The MLP (4 → 16 → 3) with default settings but batching on (opt-in, and the config
    tests read its batch dimension), named `mlp`, version `1`."""
    yield from _serve(model_dir / "mlp.onnx", log_dir, "--log-format", "json", "--batching", "true")


@pytest.fixture(scope="session")
def multi_server(model_dir: Path, log_dir: Path) -> Iterator[servekit.Server]:
    """Four inputs of four datatypes, served as `multi` version `7`."""
    yield from _serve(model_dir / "multi.onnx", log_dir, "--version", "7")


@pytest.fixture(scope="session")
def strings_server(model_dir: Path, log_dir: Path) -> Iterator[servekit.Server]:
    """BYTES in, BYTES out."""
    yield from _serve(model_dir / "strings.onnx", log_dir)


@pytest.fixture(scope="session")
def fixed_server(model_dir: Path, log_dir: Path) -> Iterator[servekit.Server]:
    """A model whose first dimension is fixed, so batching is off."""
    yield from _serve(model_dir / "fixed.onnx", log_dir)
