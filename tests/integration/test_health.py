"""Issue 15 on the real API server: ModelDeployments read right to Flux and to Argo CD.

The operator runs as its own process (as in test_operator.py) and drives one object through
each phase. At each, the object as `kubectl get -o json` returns it goes through the real health
code of each tool: kstatus (sigs.k8s.io/cli-utils, Flux's health library) and the shipped Argo
CD health script run in gopher-lua (the interpreter Argo CD embeds). Both helpers are built
here from hack/health/ through the Go module proxy, cached under ~/.cache/modeldeploy.

There is no node in this tier, so the test makes a revision's pods ready itself, by writing
their status the way a kubelet would; the ReplicaSet and Deployment controllers do the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from healthkit import Health, argocd_health, kstatus_health
from integration import test_operator
from integration.test_never_wedged import caught_up, condition
from integration.test_operator import apply, cli, example, get, revisions, wait_for

operator_process = test_operator.operator
"""test_operator's fixture: this module's own `modeldeploy run` process, with a 2 s resync."""

KSTATUS_CONDITIONS = ("Reconciling", "Stalled")


@pytest.fixture(scope="session")
def kstatus() -> Health:
    return kstatus_health()


@pytest.fixture(scope="session")
def argocd() -> Health:
    return argocd_health()


def make_ready(crd, namespace: str, revision: str, count: int) -> None:
    """Writes Ready into the status of a revision's pods, as a kubelet would once they pass
    their readiness probe (no node runs them here)."""
    selector = f"modeldeploy.io/revision={revision}"
    pods = wait_for(lambda: len(items := get(crd, namespace, "pods", "-l", selector)["items"])
                    == count and items, f"{count} pods of {revision}")  # fmt: skip
    ready = {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"},
    ]}}  # fmt: skip
    patch = json.dumps(ready)
    for pod in pods:
        crd.kubectl("patch", "pod", pod["metadata"]["name"], "-n", namespace,
                    "--subresource=status", "--type=strategic", "-p", patch)  # fmt: skip


def settled_in(crd, namespace: str, name: str, phase: str, also: Callable[[Any], bool]) -> Any:
    """The object once its status describes its spec, in `phase`, and `also` holds."""

    def check() -> Any:
        md = caught_up(crd, namespace, name)
        return md if md and md["status"].get("phase") == phase and also(md) else None

    return check


def test_each_phase_reads_right_to_kstatus_and_argo_cd(
    crd, operator_process, namespace, kstatus, argocd
):
    seen: dict[str, tuple[dict[str, str], dict[str, str]]] = {}

    without: dict[str, str] = {}

    def judge(label: str, md: dict[str, Any]) -> tuple[str, str]:
        seen[label] = (kstatus(md), argocd(md))
        # What kstatus made of the same object before this issue (no Reconciling, no Stalled).
        kept = [c for c in md["status"]["conditions"] if c["type"] not in KSTATUS_CONDITIONS]
        without[label] = kstatus({**md, "status": {**md["status"], "conditions": kept}})["status"]
        return seen[label][0]["status"], seen[label][1]["status"]

    def reach(name: str, phase: str, also: Callable[[Any], bool] = bool) -> dict[str, Any]:
        return wait_for(settled_in(crd, namespace, name, phase, also), phase, operator_process)

    apply(crd, namespace, example())
    (stable,) = wait_for(lambda: revisions(crd, namespace, "iris"), "a revision", operator_process)
    # A scale-up: the first revision's pods are not ready yet.
    md = reach("iris", "Progressing")
    assert judge("Progressing (scale-up)", md) == ("InProgress", "Progressing")

    make_ready(crd, namespace, stable, 2)
    md = reach("iris", "Healthy")
    assert judge("Healthy", md) == ("Current", "Healthy")
    reconciling = condition(md["status"], "Reconciling")
    assert reconciling == {}, reconciling  # settled: neither Reconciling nor Stalled
    assert condition(md["status"], "Stalled") == {}
    crd.kubectl("wait", "--for=condition=Ready", "md/iris", "-n", namespace, "--timeout=30s")

    # The issue's case: a rollout under way while the old revision serves (Ready=True).
    doc = example()
    doc["spec"]["model"]["uri"] = "https://models.example/iris-v2.onnx"
    apply(crd, namespace, doc)
    md = reach("iris", "Progressing", lambda md: md["status"].get("canaryRevision"))
    assert condition(md["status"], "Ready")["status"] == "True"
    assert judge("Progressing (rollout)", md) == ("InProgress", "Progressing")
    assert without["Progressing (rollout)"] == "Current"  # the bug the issue found
    assert seen["Progressing (rollout)"][0]["message"].startswith(
        f"revision {md['status']['canaryRevision']['name']}"
    )

    assert cli(crd, "abort", "iris", "-n", namespace).returncode == 0
    md = reach("iris", "RolledBack")
    assert condition(md["status"], "Ready")["status"] == "True"  # v1 serves again
    assert judge("RolledBack", md) == ("Failed", "Degraded")
    assert without["RolledBack"] == "Current"  # the bug the issue found
    assert "rolled back" in seen["RolledBack"][0]["message"]

    assert cli(crd, "retry", "iris", "-n", namespace).returncode == 0
    wait_for(lambda: caught_up(crd, namespace, "iris") and
             get(crd, namespace, "md", "iris")["status"].get("phase") == "Progressing",
             "retried", operator_process)  # fmt: skip
    assert cli(crd, "pause", "iris", "-n", namespace).returncode == 0
    md = reach("iris", "Paused")
    assert judge("Paused", md) == ("InProgress", "Suspended")

    secured = example("secured")
    secured["spec"]["serving"]["auth"] = {"secretRef": {"name": "model-token"}}
    apply(crd, namespace, secured)
    md = reach("secured", "Failed")
    assert judge("Degraded (missing Secret)", md) == ("Failed", "Degraded")
    assert "model-token" in seen["Degraded (missing Secret)"][0]["message"]
    # `kubectl wait` on the conditions it always had keeps working.
    crd.kubectl("wait", "--for=condition=Degraded", "md/secured", "-n", namespace, "--timeout=30s")

    for label, (flux, argo) in seen.items():
        print(f"{label:26} kstatus {flux['status']:10} (before: {without[label]:10}) "
              f"argocd {argo['status']:11} | {flux['message'][:60]}")  # fmt: skip
