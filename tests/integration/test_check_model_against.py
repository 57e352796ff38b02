"""`modeldeploy check-model --against md/NAME` against a real API server: the ModelDeployment's
status names the stable revision, its Ready pods are found by label, and their OIP metadata is
read through the API server's pod proxy from a real modelserve process.

This tier has no node, so the pod is an object whose status the test writes (Ready, with this
machine's address as its IP) and the "pod" answering behind it is modelserve started here on
that address: the API server proxies to it as it would to a container. No operator runs: the
test writes the ModelDeployment's status as the operator would.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx_models
import pytest
import serverproc
from onnx import TensorProto, helper, numpy_helper

from modeldeploy.checkmodel import CheckError, against_cluster
from modeldeploy.core.naming import revision_selector
from modeldeploy.core.signature import breaking, compare, parse_metadata

NAME = "fraud"
REVISION = "fraud-7d9f8c"
SERVED_AS = "fraud-model"  # MODELSERVE_NAME of the pod: not the ModelDeployment's name


def host_address() -> str:
    """An address of this machine the API server will proxy to (it refuses loopback)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
            address = str(sock.getsockname()[0])
    except OSError:  # no route at all
        address = "127.0.0.1"
    if address.startswith(("127.", "169.254.")):
        pytest.skip("no non-loopback address on this machine for the API server to proxy to")
    return address


def model(path: Path, input_name: str) -> Path:
    """`y` [batch, 1] = row sums of `input_name` [batch, 4]."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", [input_name, "axes"], ["y"], keepdims=1)],
        path.stem,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    return onnx_models.save_graph(graph, path)


@contextlib.contextmanager
def modelserve(root: Path, address: str, *args: str) -> Iterator[int]:
    """modelserve on `address`, serving root/served.onnx as SERVED_AS: its port."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        port = int(sock.getsockname()[1])
    command = [
        sys.executable, "-m", "modelserve", "--model", str(root / "served.onnx"),
        "--name", SERVED_AS, "--host", address, "--port", str(port),
        "--model-dir", str(root / "cache"), *args,
    ]  # fmt: skip
    process = serverproc.spawn(command, root / f"modelserve-{port}.log")
    try:
        serverproc.wait_ready(f"http://{address}:{port}/v2/health/ready", process, 30)
        yield port
    finally:
        serverproc.stop(process)


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    """modelserve on this machine's address, serving the `x` model: (address, port, root)."""
    root = tmp_path_factory.mktemp("against")
    address = host_address()
    model(root / "served.onnx", "x")
    model(root / "renamed.onnx", "features")
    with modelserve(root, address) as port:
        yield address, port, root


def deployment(crd, namespace: str, *, stable: str | None) -> None:
    """A ModelDeployment, with the status the operator writes once `stable` serves."""
    crd.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {"model": {"uri": "https://models.example/fraud/v1.onnx", "version": "v1"}},
    }))  # fmt: skip
    if stable is not None:
        status = {"status": {"stableRevision": {"name": stable, "modelVersion": "v1"}}}
        crd.kubectl("patch", "-n", namespace, "modeldeployment", NAME, "--subresource=status",
                    "--type=merge", "-p", json.dumps(status))  # fmt: skip


def pod(crd, namespace: str, name: str, address: str, *, ready: bool) -> None:
    """A pod of REVISION as the Deployment makes it, its status as a kubelet would write it."""
    crd.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": revision_selector(NAME, REVISION)},
        "spec": {
            "schedulerName": "nobody",  # no node here: nothing is to bind it
            "containers": [{"name": "modelserve", "image": "modelserve:test",
                            "env": [{"name": "MODELSERVE_NAME", "value": SERVED_AS}]}],
        },
    }))  # fmt: skip
    status = {"status": {
        "phase": "Running", "podIP": address, "podIPs": [{"ip": address}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }}  # fmt: skip
    crd.kubectl("patch", "-n", namespace, "pod", name, "--subresource=status", "--type=merge",
                "-p", json.dumps(status))  # fmt: skip


def test_the_stable_revision_signature_is_read_through_the_pod_proxy(
    crd, namespace: str, serving: tuple[str, int, Path]
) -> None:
    address, port, root = serving
    deployment(crd, namespace, stable=REVISION)
    pod(crd, namespace, f"{REVISION}-abcde", address, ready=True)
    pod(crd, namespace, f"{REVISION}-notready", "192.0.2.254", ready=False)
    served, read = against_cluster(f"md/{NAME}", namespace, str(crd.kubeconfig), port=port)
    assert read == {
        "kind": "cluster", "modelDeployment": f"{namespace}/{NAME}", "revision": REVISION,
        "modelVersion": "v1", "model": SERVED_AS, "pods": [f"{REVISION}-abcde"],
    }  # fmt: skip
    assert served == parse_metadata({
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
    })  # fmt: skip
    # What check-model then does with it: the candidate renames the input.
    from modelserve.model import Model, SessionOptions

    candidate = Model.load(root / "renamed.onnx", name="c", version="", sha256="",
                           options=SessionOptions())  # fmt: skip
    [found] = breaking(compare(served, parse_metadata(candidate.metadata())))
    assert (found.kind, found.tensor, found.after) == ("renamed", "x", "features")


def test_a_revision_without_ready_pods_is_an_error_that_says_so(
    crd, namespace: str, serving: tuple[str, int, Path]
) -> None:
    address, port, _ = serving
    deployment(crd, namespace, stable=REVISION)
    pod(crd, namespace, f"{REVISION}-starting", address, ready=False)
    with pytest.raises(CheckError, match=f"revision {namespace}/{REVISION}: no Ready pod"):
        against_cluster(f"md/{NAME}", namespace, str(crd.kubeconfig), port=port)


def run_cli(crd, namespace: str, root: Path, ref: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy.cli", "check-model", str(root / "renamed.onnx"),
         "--against", ref, "-n", namespace, "--kubeconfig", str(crd.kubeconfig)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_command_exits_2_when_nothing_serves_to_compare_with(
    crd, namespace: str, serving: tuple[str, int, Path]
) -> None:
    _, _, root = serving
    done = run_cli(crd, namespace, root, f"md/{NAME}")
    assert done.returncode == 2
    assert f"modeldeployment {namespace}/{NAME} not found" in done.stderr
    deployment(crd, namespace, stable=None)
    done = run_cli(crd, namespace, root, f"md/{NAME}")
    assert done.returncode == 2
    assert "has no stable revision yet (status.stableRevision is unset)" in done.stderr


def test_a_server_with_inference_auth_is_an_error_that_says_what_to_do(
    crd, namespace: str, serving: tuple[str, int, Path]
) -> None:
    """Its metadata needs a bearer token, which no request through the pod proxy carries."""
    address, _, root = serving
    deployment(crd, namespace, stable=REVISION)
    pod(crd, namespace, f"{REVISION}-auth", address, ready=True)
    refused = pytest.raises(CheckError, match=r"asks for credentials .* \(--against-file\)")
    with modelserve(root, address, "--auth-token", "t0ken") as port, refused:
        against_cluster(f"md/{NAME}", namespace, str(crd.kubeconfig), port=port)
