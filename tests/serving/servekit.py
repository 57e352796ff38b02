"""Helpers for the serving tests: real ONNX models built with `onnx.helper`, and a real
`modelserve` process on a free loopback port, stopped with SIGTERM like a kubelet does (the
process handling is serverproc's, which benchmarks/serving.py shares).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import serverproc
from onnx import TensorProto, helper, numpy_helper
from onnx_models import save_model
from serverproc import free_port as free_port

REPO = Path(__file__).resolve().parents[2]


def mlp(path: Path, dims: tuple[int, ...] = (4, 16, 3), seed: int = 0) -> Path:
    """A ReLU MLP, FP32 input `input` [batch, dims[0]] → output `output` [batch, dims[-1]]."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "input"
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(rng.standard_normal(b).astype(np.float32), f"b{i}"),
        ]
        last = i == len(dims) - 2
        out = "output" if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out if last else f"g{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", dims[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", dims[-1]])],
        inits,
    )
    return save_model(graph, path)


def multi(path: Path) -> Path:
    """Several inputs and datatypes: INT64 `a` [b,3], BOOL `flag` [b,1], FP64 `x` [b,2],
    FP16 `h` [b,2]; outputs `sum_a` INT64 [b,1], `x2` FP64 [b,2], `not_flag` BOOL [b,1],
    `h32` FP32 [b,2]."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["a", "axes"], ["sum_a"], keepdims=1),
            helper.make_node("Add", ["x", "x"], ["x2"]),
            helper.make_node("Not", ["flag"], ["not_flag"]),
            helper.make_node("Cast", ["h"], ["h32"], to=TensorProto.FLOAT),
        ],
        "multi",
        [
            helper.make_tensor_value_info("a", TensorProto.INT64, ["b", 3]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, ["b", 1]),
            helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["b", 2]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT16, ["b", 2]),
        ],
        [
            helper.make_tensor_value_info("sum_a", TensorProto.INT64, ["b", 1]),
            helper.make_tensor_value_info("x2", TensorProto.DOUBLE, ["b", 2]),
            helper.make_tensor_value_info("not_flag", TensorProto.BOOL, ["b", 1]),
            helper.make_tensor_value_info("h32", TensorProto.FLOAT, ["b", 2]),
        ],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    return save_model(graph, path)


def strings(path: Path) -> Path:
    """BYTES in and out: `text` STRING [b] → `echo` STRING [b] (Identity)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["echo"])],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["b"])],
        [helper.make_tensor_value_info("echo", TensorProto.STRING, ["b"])],
    )
    return save_model(graph, path)


def fixed(path: Path) -> Path:
    """A fixed first dimension (not batchable): `input` FP32 [1, 4] → `output` = input + 1."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["input", "one"], ["output"])],
        "fixed",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.ones(4, dtype=np.float32), "one")],
    )
    return save_model(graph, path)


def ragged(path: Path) -> Path:
    """A dynamic non-batch dimension shared by two inputs: `x` and `z` FP32 [batch, seq] →
    `y` = x + z [batch, seq]. Rows of different widths, and inputs that disagree on `seq`."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "z"], ["y"])],
        "ragged",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq"])],
    )
    return save_model(graph, path)


def flat(path: Path) -> Path:
    """Dynamic first dimensions that are not the same batch: `input` FP32 [batch, 4] →
    `output` = Reshape(input, [-1]) FP32 [values]. Slicing a batch's output by rows is wrong."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "minus_one"], ["output"])],
        "flat",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["values"])],
        [numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus_one")],
    )
    return save_model(graph, path)


@dataclass
class Server:
    """A running `python -m modelserve` process."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    log_path: Path

    def logs(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the server and wait for it to exit; returns the exit code. One that outlives
        timeout is killed, and TimeoutExpired raised."""
        code = serverproc.stop(self.process, sig, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.process.args, timeout)
        return code

    def client(self, **kwargs: object) -> httpx.Client:
        """An HTTP client bound to this server."""
        return httpx.Client(base_url=self.url, timeout=10.0, **kwargs)  # type: ignore[arg-type]


def start(
    model: Path | str,
    *args: str,
    log_dir: Path,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    scheme: str = "http",
    timeout: float = 30.0,
) -> Server:
    """Start modelserve on a free loopback port; wait for Ready unless told not to."""
    port = free_port()
    log_path = log_dir / f"modelserve-{port}.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    environment.update(env or {})
    command = [
        sys.executable, "-m", "modelserve", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--model-dir", str(log_dir / "cache"),
        *args,
    ]  # fmt: skip
    process = serverproc.spawn(command, log_path, env=environment)
    server = Server(process, f"{scheme}://127.0.0.1:{port}", port, log_path)
    if wait_ready:
        wait_until_ready(server, timeout=timeout)
    return server


def wait_until_ready(server: Server, *, timeout: float = 30.0) -> None:
    """Poll /v2/health/ready; fail with the server's log if it exits or never turns Ready."""
    try:
        serverproc.wait_ready(f"{server.url}/v2/health/ready", server.process, timeout)
    except serverproc.ExitedError:
        raise AssertionError(f"modelserve exited early:\n{server.logs()}") from None
    except serverproc.NotReadyError:
        server.stop(signal.SIGKILL)
        raise AssertionError(f"modelserve not ready after {timeout}s:\n{server.logs()}") from None
