"""The operator's signature gate against a real API server, a real operator process and real
modelserve processes: a rollout whose new model renames an input is refused before it takes
any traffic, with the reason in `kubectl describe md`, and goes on once the spec allows it.

This tier has no node: the real controller-manager makes each revision's ReplicaSet and Pods,
and the test writes their status as a kubelet would (Ready, with an address of this machine as
the pod IP), so the ReplicaSet and the Deployment count them Ready. Behind each address a real
modelserve listens on the serving port (8080) and the API server's pod proxy reaches it, as it
reaches a container. The two revisions need two addresses (one port each): this machine's IPv4
and IPv6 ones; the test is skipped where there are not two.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serverproc

from integration import test_operator
from integration.operator_run import Operator, wait_for
from integration.test_check_model_against import host_address, model
from modeldeploy.core.naming import HTTP_PORT

operator_process = test_operator.operator
"""test_operator's fixture: this module's own `modeldeploy run` process, with a 2 s resync."""
NAME = "iris"


def ipv6_address() -> str:
    """A global IPv6 address of this machine (the canary's pod IP), or skip."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.connect(("2001:db8::1", 9))  # no packet is sent: this only picks the route
            address = str(sock.getsockname()[0])
    except OSError:
        pytest.skip("no IPv6 route on this machine: the canary needs a second pod address")
    if address == "::1" or address.lower().startswith("fe80"):
        pytest.skip("no global IPv6 address on this machine for the canary's pods")
    return address


@contextlib.contextmanager
def modelserve(root: Path, model_file: Path, address: str) -> Iterator[None]:
    """modelserve on address:8080 serving `model_file` as NAME, as the revision's pod would."""
    command = [
        sys.executable, "-m", "modelserve", "--model", str(model_file), "--name", NAME,
        "--host", address, "--port", str(HTTP_PORT), "--model-dir", str(root / "cache"),
    ]  # fmt: skip
    process = serverproc.spawn(command, root / f"modelserve-{model_file.stem}.log")
    host = f"[{address}]" if ":" in address else address
    try:
        try:
            serverproc.wait_ready(f"http://{host}:{HTTP_PORT}/v2/health/ready", process, 30)
        except serverproc.ExitedError:
            log = (root / f"modelserve-{model_file.stem}.log").read_text()[-1500:]
            pytest.skip(f"modelserve could not listen on {host}:{HTTP_PORT}: {log}")
        yield
    finally:
        serverproc.stop(process)


@pytest.fixture(scope="module")
def addresses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(stable address, canary address): modelserve on each, serving the `x` model on the
    first and the same model with its input renamed `features` on the second."""
    root = tmp_path_factory.mktemp("gate")
    stable, canary = host_address(), ipv6_address()
    with modelserve(root, model(root / "v1.onnx", "x"), stable), \
            modelserve(root, model(root / "v2.onnx", "features"), canary):  # fmt: skip
        yield stable, canary


def md(version: str, **rollout: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"uri": f"https://models.example/iris-{version}.onnx", "version": version},
            "serving": {"replicas": 1},
            "rollout": {"strategy": "Canary", "steps": [{"setWeight": 50, "pause": "1h"}],
                        **rollout},
        },
    }  # fmt: skip


def get(crd, namespace: str, *what: str) -> Any:
    return json.loads(crd.kubectl("get", *what, "-n", namespace, "-o", "json").stdout)


def status(crd, namespace: str) -> dict[str, Any]:
    return dict(get(crd, namespace, "md", NAME).get("status") or {})


def condition(state: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in state.get("conditions", []) if c["type"] == kind), {})


def make_ready(crd, namespace: str, revision: str, address: str) -> bool:
    """Write Ready, with `address` as pod IP, on every pod of `revision` not yet Ready; whether
    the revision has a pod at all."""
    pods = get(crd, namespace, "pods", "-l", f"modeldeploy.io/revision={revision}")["items"]
    for pod in pods:
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            continue
        patch = {"status": {
            "phase": "Running", "podIP": address, "podIPs": [{"ip": address}],
            "conditions": [{"type": "Ready", "status": "True"}],
        }}  # fmt: skip
        crd.kubectl("patch", "-n", namespace, "pod", pod["metadata"]["name"],
                    "--subresource=status", "--type=merge", "-p", json.dumps(patch))  # fmt: skip
    return bool(pods)


def serving_v1(crd, op: Operator, namespace: str, stable_address: str, **rollout: Any) -> str:
    """v1 applied and Ready on `stable_address`: its revision."""
    crd.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(md("v1", **rollout)))
    first = wait_for(lambda: (status(crd, namespace).get("stableRevision") or {}).get("name"),
                     "the stable revision", op)  # fmt: skip
    wait_for(lambda: make_ready(crd, namespace, first, stable_address) and
             condition(status(crd, namespace), "Ready").get("status") == "True",
             "v1 Ready", op, timeout=90)  # fmt: skip
    return str(first)


def candidate(crd, op: Operator, namespace: str) -> str:
    return str(wait_for(lambda: (status(crd, namespace).get("canaryRevision") or {}).get("name"),
                        "the canary revision", op))  # fmt: skip


def test_a_renamed_input_is_refused_then_allowed(crd, operator_process, namespace, addresses):
    op = operator_process
    stable_address, canary_address = addresses
    first = serving_v1(crd, op, namespace, stable_address)
    crd.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(md("v2")))
    new = candidate(crd, op, namespace)
    weights: list[int] = []

    def refused() -> dict[str, Any] | None:
        make_ready(crd, namespace, new, canary_address)
        state = status(crd, namespace)
        weights.append(int(state.get("canaryWeight") or 0))
        return state if condition(state, "Degraded").get("reason") == "IncompatibleSignature" \
            else None  # fmt: skip

    state = wait_for(refused, "the signature gate's refusal", op, timeout=120)
    assert max(weights) == 0, weights  # no traffic ever went to the candidate
    assert state["phase"] == "Failed"
    assert state["stableRevision"]["name"] == first
    assert state["rolledBackRevision"]["name"] == new
    assert condition(state, "Ready")["status"] == "True"  # v1 keeps serving
    message = condition(state, "Degraded")["message"]
    assert "input x renamed to features" in message
    assert "allowSignatureChange: true" in message
    described = wait_for(lambda: "IncompatibleSignature" in (d := str(crd.kubectl(
        "describe", "md", NAME, "-n", namespace).stdout)) and d, "the Event", op)  # fmt: skip
    assert "input x renamed to features" in described
    wait_for(lambda: get(crd, namespace, "deploy", new)["spec"]["replicas"] == 0,
             "the refused revision scaled to 0", op)  # fmt: skip

    # The same model, allowed: the revision is tried again and takes its step's traffic.
    crd.kubectl("apply", "-n", namespace, "-f", "-",
                input=json.dumps(md("v2", allowSignatureChange=True)))  # fmt: skip

    def weighted() -> dict[str, Any] | None:
        make_ready(crd, namespace, new, canary_address)
        state = status(crd, namespace)
        return state if int(state.get("canaryWeight") or 0) > 0 else None

    state = wait_for(weighted, "traffic on the allowed candidate", op, timeout=120)
    assert state["canaryRevision"]["name"] == new
    assert condition(state, "Degraded").get("status") == "False"


def test_an_allowed_breaking_change_takes_traffic_and_is_reported(
    crd, operator_process, namespace, addresses
):
    """allowSignatureChange set from the start: the renamed input never holds the rollout,
    and a Warning Event names it."""
    op = operator_process
    stable_address, canary_address = addresses
    serving_v1(crd, op, namespace, stable_address, allowSignatureChange=True)
    crd.kubectl("apply", "-n", namespace, "-f", "-",
                input=json.dumps(md("v2", allowSignatureChange=True)))  # fmt: skip
    new = candidate(crd, op, namespace)

    def weighted() -> dict[str, Any] | None:
        make_ready(crd, namespace, new, canary_address)
        state = status(crd, namespace)
        return state if int(state.get("canaryWeight") or 0) > 0 else None

    wait_for(weighted, "traffic on the candidate", op, timeout=120)
    described = wait_for(lambda: "SignatureChangeAllowed" in (d := str(crd.kubectl(
        "describe", "md", NAME, "-n", namespace).stdout)) and d, "the Event", op)  # fmt: skip
    assert "input x renamed to features" in described
