"""The operator process against the real control plane: children, revisions, drift, deletion.

Pods never run in tier 1 (no node), so readiness is tested through the pure status function
(tests/unit/test_plan.py) and end to end in the real-node suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from integration.operator_run import Operator, start_operator, wait_for
from speccases import EXAMPLES

RESYNC_SECONDS = 2
OWNER_LABEL = "modeldeploy.io/deployment"
CHILD_KINDS = "deployments,services,poddisruptionbudgets,horizontalpodautoscalers"


@pytest.fixture(scope="module")
def operator(crd, tmp_path_factory) -> Iterator[Operator]:
    """`modeldeploy run` as its own process, as it runs in its pod (but with a 2 s resync)."""
    op = start_operator(crd.kubeconfig, tmp_path_factory.mktemp("operator"), "--all-namespaces",
                        env={"MODELDEPLOY_RESYNC_SECONDS": str(RESYNC_SECONDS)})  # fmt: skip
    yield op
    op.stop()


def get(crd, namespace: str, what: str, *names: str) -> Any:
    out = crd.kubectl("get", what, *names, "-n", namespace, "-o", "json").stdout
    return json.loads(out)


def children(crd, namespace: str, owner: str) -> dict[tuple[str, str], dict[str, Any]]:
    items = get(crd, namespace, CHILD_KINDS, "-l", f"{OWNER_LABEL}={owner}")["items"]
    return {(i["kind"], i["metadata"]["name"]): i for i in items}


def apply(crd, namespace: str, doc: dict[str, Any]) -> None:
    crd.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))


def example(name: str = "iris") -> dict[str, Any]:
    doc = yaml.safe_load((EXAMPLES / "canary.yaml").read_text())
    doc["metadata"]["name"] = name
    return doc


def describe(crd, namespace: str, name: str = "iris") -> str:
    return str(crd.kubectl("describe", "md", name, "-n", namespace).stdout)


def revisions(crd, namespace: str, owner: str) -> list[str]:
    return sorted(name for kind, name in children(crd, namespace, owner) if kind == "Deployment")


def test_apply_creates_owned_children_and_real_pods(crd, operator, namespace):
    apply(crd, namespace, example())
    md = get(crd, namespace, "md", "iris")
    found = wait_for(lambda: len(children(crd, namespace, "iris")) == 3 and
                     children(crd, namespace, "iris"), "3 children", operator)  # fmt: skip
    # At rest: the revision, the entry Service and (2 replicas) the PDB; no role Services.
    assert sorted(found) == [("Deployment", revisions(crd, namespace, "iris")[0]),
                             ("PodDisruptionBudget", "iris"), ("Service", "iris")]  # fmt: skip
    for (kind, name), child in found.items():
        owner = child["metadata"]["ownerReferences"]
        assert owner == [{"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
                          "name": "iris", "uid": md["metadata"]["uid"], "controller": True,
                          "blockOwnerDeletion": True}], f"{kind} {name}"  # fmt: skip
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modeldeploy"
    (deploy_name,) = revisions(crd, namespace, "iris")
    deploy = found[("Deployment", deploy_name)]
    assert deploy["spec"]["replicas"] == 2
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "MODELSERVE_MODEL",
            "value": "file:///opt/modelserve/models/iris-v1.onnx"} in container["env"]  # fmt: skip

    # The real controller-manager turns the Deployment into a ReplicaSet and Pods.
    selector = f"modeldeploy.io/revision={deploy_name}"
    pods = wait_for(lambda: len(items := get(crd, namespace, "pods", "-l", selector)["items"]) == 2
                    and items, "2 pods")  # fmt: skip
    replicaset = pods[0]["metadata"]["ownerReferences"][0]
    assert replicaset["kind"] == "ReplicaSet"
    assert replicaset["name"].startswith(deploy_name + "-")

    status = wait_for(lambda: get(crd, namespace, "md", "iris").get("status", {}).get(
        "observedGeneration") == 1 and get(crd, namespace, "md", "iris")["status"],
        "status", operator)  # fmt: skip
    assert status["stableRevision"]["name"] == deploy_name
    assert status["phase"] == "Progressing"  # pods cannot run without a node
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodsNotReady")
    described = wait_for(lambda: "RevisionCreated" in (d := describe(crd, namespace)) and d,
                         "the RevisionCreated event")  # fmt: skip
    assert f"created revision {deploy_name} (model v1)" in described


def test_model_change_makes_a_revision_replicas_change_does_not(crd, operator, namespace):
    apply(crd, namespace, example())
    first = wait_for(lambda: revisions(crd, namespace, "iris"), "first revision", operator)
    doc = example()
    doc["spec"]["serving"]["replicas"] = 3
    apply(crd, namespace, doc)
    wait_for(lambda: get(crd, namespace, "deploy", first[0])["spec"]["replicas"] == 3,
             "replicas 3 on the same revision", operator)  # fmt: skip
    assert revisions(crd, namespace, "iris") == first

    doc["spec"]["model"]["uri"] = "https://models.example/iris-v2.onnx"
    apply(crd, namespace, doc)
    both = wait_for(lambda: len(revisions(crd, namespace, "iris")) == 2 and
                    revisions(crd, namespace, "iris"), "a second revision", operator)  # fmt: skip
    (new,) = set(both) - set(first)
    status = wait_for(lambda: (s := get(crd, namespace, "md", "iris").get("status", {})).get(
        "canaryRevision") and s, "canaryRevision in status", operator)  # fmt: skip
    assert status["canaryRevision"]["name"] == new
    assert status["stableRevision"]["name"] == first[0]  # the new pods are not ready
    # A canary: sized for its first step (10 % next to 3 stable pods is 1 pod).
    assert get(crd, namespace, "deploy", new)["spec"]["replicas"] == 1


def test_hand_edits_and_deletions_are_repaired(crd, operator, namespace):
    apply(crd, namespace, example())
    wait_for(lambda: len(children(crd, namespace, "iris")) == 3, "children", operator)
    (deploy,) = revisions(crd, namespace, "iris")
    crd.kubectl("delete", "service", "iris", "-n", namespace)
    crd.kubectl("set", "image", f"deployment/{deploy}", "modelserve=evil:1", "-n", namespace)

    def repaired() -> bool:
        found = children(crd, namespace, "iris")
        image = found[("Deployment", deploy)]["spec"]["template"]["spec"]["containers"][0]["image"]
        return ("Service", "iris") in found and image == "modeldeploy/serving:dev"

    wait_for(repaired, "the Service and the image repaired", operator, timeout=6 * RESYNC_SECONDS)
    described = wait_for(lambda: "was missing" in (d := describe(crd, namespace)) and d,
                         "the Repaired events")  # fmt: skip
    assert "Service iris was missing; recreated" in described
    assert f"Deployment {deploy} was changed by hand; restored" in described


def test_a_reconcile_with_nothing_changed_writes_nothing(crd, operator, namespace):
    apply(crd, namespace, example())
    wait_for(lambda: len(children(crd, namespace, "iris")) == 3 and
             get(crd, namespace, "md", "iris").get("status"), "settled", operator)  # fmt: skip

    def versions() -> dict[str, str]:
        objs = {f"{k}/{n}": c["metadata"]["resourceVersion"]
                for (k, n), c in children(crd, namespace, "iris").items()}  # fmt: skip
        objs["md"] = get(crd, namespace, "md", "iris")["metadata"]["resourceVersion"]
        return objs

    time.sleep(2 * RESYNC_SECONDS)  # let status catch up with the controller-manager
    writes = operator.quiet_writes(window=2 * RESYNC_SECONDS)
    before = versions()
    time.sleep(3 * RESYNC_SECONDS + 1)  # three resyncs at least
    assert versions() == before
    assert operator.writes() == writes


def test_a_missing_secret_is_a_condition_not_a_crash(crd, operator, namespace):
    doc = example("secured")
    doc["spec"]["serving"]["auth"] = {"secretRef": {"name": "model-token"}}
    apply(crd, namespace, doc)
    crd.kubectl("wait", "--for=condition=Degraded", "md/secured", "-n", namespace, "--timeout=60s")
    status = get(crd, namespace, "md", "secured")["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "SecretNotFound"
    assert degraded["message"].startswith(
        f'spec.serving.auth.secretRef.name: Secret "model-token" not found in namespace {namespace}'
    )
    assert revisions(crd, namespace, "secured") == []  # no pods that would crash-loop
    crd.kubectl("create", "secret", "generic", "model-token", "--from-literal=token=s3cr3t",
                "-n", namespace)  # fmt: skip
    crd.kubectl("wait", "--for=condition=Degraded=False", "md/secured", "-n", namespace,
                "--timeout=60s")  # fmt: skip
    wait_for(lambda: revisions(crd, namespace, "secured"), "a revision once the Secret exists")
    assert operator.proc.poll() is None


def test_deleting_the_modeldeployment_removes_every_child(crd, operator, namespace):
    apply(crd, namespace, example())
    wait_for(lambda: len(children(crd, namespace, "iris")) == 3, "children", operator)
    crd.kubectl("delete", "md", "iris", "-n", namespace)
    # The real garbage collector (controller-manager) removes them through ownerReferences.
    wait_for(lambda: not children(crd, namespace, "iris"), "children gone", operator)
    assert get(crd, namespace, "replicasets")["items"] == []


def cli(crd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy.cli", *args, f"--kubeconfig={crd.kubeconfig}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_rollout_controls_from_the_command_line(crd, operator, namespace):
    apply(crd, namespace, example())
    (stable,) = wait_for(lambda: revisions(crd, namespace, "iris"), "first revision", operator)
    doc = example()
    doc["spec"]["model"]["uri"] = "https://models.example/iris-v2.onnx"
    apply(crd, namespace, doc)
    status = lambda: get(crd, namespace, "md", "iris").get("status", {})  # noqa: E731
    canary = wait_for(lambda: (status().get("canaryRevision") or {}).get("name"), "a canary")
    # The canary is sized for its first step (10 % next to 2 stable pods: 1 pod).
    wait_for(lambda: get(crd, namespace, "deploy", canary)["spec"]["replicas"] == 1, "1 pod")

    out = cli(crd, "abort", "iris", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "modeldeployment.modeldeploy.io/iris abort requested\n"
    wait_for(lambda: status().get("phase") == "RolledBack", "RolledBack", operator)
    assert status()["rolledBackRevision"]["name"] == canary
    wait_for(lambda: get(crd, namespace, "deploy", canary)["spec"]["replicas"] == 0, "canary at 0")
    assert get(crd, namespace, "deploy", stable)["spec"]["replicas"] == 2
    wait_for(lambda: "aborted by the user (modeldeploy abort)" in describe(crd, namespace),
             "the RolledBack event")  # fmt: skip
    labels = f'name="iris",namespace="{namespace}"'
    exported = operator.metrics()
    assert f'modeldeploy_phase{{{labels},phase="RolledBack"}} 1.0' in exported
    assert f'modeldeploy_rollout_outcomes_total{{{labels},outcome="RolledBack"}} 1.0' in exported

    assert cli(crd, "retry", "iris", "-n", namespace).returncode == 0
    wait_for(lambda: (status().get("canaryRevision") or {}).get("name") == canary, "retried")
    wait_for(lambda: get(crd, namespace, "deploy", canary)["spec"]["replicas"] == 1, "1 pod")

    assert cli(crd, "pause", "iris", "-n", namespace).stdout.endswith("iris paused\n")
    wait_for(lambda: status().get("phase") == "Paused", "Paused", operator)

    missing = cli(crd, "promote", "nosuch", "-n", namespace)
    assert missing.returncode == 1
    assert f'ModelDeployment "nosuch" not found in namespace {namespace}' in missing.stderr


@pytest.mark.usefixtures("operator")
def test_gateway_routing_without_gateway_api_installed_says_so(crd, namespace):
    doc = example("routed")
    doc["spec"]["rollout"]["trafficRouting"] = {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}
    apply(crd, namespace, doc)
    crd.kubectl("wait", "--for=condition=Degraded", "md/routed", "-n", namespace, "--timeout=60s")
    status = get(crd, namespace, "md", "routed")["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "CRDNotInstalled"
    assert degraded["message"].startswith(
        "spec.rollout.trafficRouting.gatewayAPI: httproutes.gateway.networking.k8s.io is not "
        "installed"
    )
