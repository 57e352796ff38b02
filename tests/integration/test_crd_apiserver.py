"""The CRD on a real kube-apiserver: what a user sees with kubectl apply, get, explain and scale."""

from __future__ import annotations

import json

import pytest
import yaml

from modeldeploy.api import ModelDeploymentSpec
from speccases import BAD_SPECS, EXAMPLES, BadSpec


def test_examples_apply_and_list_with_printer_columns(crd, namespace):
    applied = crd.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES)).stdout
    files = EXAMPLES.glob("*.yaml")
    names = sorted(yaml.safe_load(p.read_text())["metadata"]["name"] for p in files)
    for name in names:
        assert f"modeldeployment.modeldeploy.io/{name} created" in applied

    lines = crd.kubectl("get", "md", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "PHASE", "WEIGHT", "READY", "AGE"]
    assert sorted(line.split()[0] for line in lines[1:]) == names

    wide = crd.kubectl("get", "mdep", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [
        "NAME", "VERSION", "PHASE", "WEIGHT", "READY", "SERVING", "STRATEGY", "URL", "AGE",
    ]  # fmt: skip
    strategies = {line.split()[0]: line.split()[2] for line in wide[1:]}
    assert strategies == {"fraud": "BlueGreen", "iris": "Canary", "ranker": "ABTest",
                          "sentiment": "Immediate", "scorer": "Canary"}  # fmt: skip


@pytest.mark.parametrize("case", BAD_SPECS, ids=lambda c: c.id)
def test_bad_spec_is_refused_by_the_api_server(crd, namespace, case: BadSpec):
    name = f"bad-{case.id}"[:45]
    doc = case.document(name)
    proc = crd.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert proc.returncode != 0, f"{case.id} was accepted: {proc.stdout}"
    assert case.field in proc.stderr, proc.stderr
    assert case.says in proc.stderr, proc.stderr
    stored = crd.kubectl("get", "md", "-n", namespace, "-o", "name").stdout
    assert stored.strip() == ""


def test_api_server_fills_the_same_defaults_as_the_models(crd, namespace):
    minimal = {"model": {"uri": "https://models.example/m.onnx"}}
    doc = {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
           "metadata": {"name": "minimal"}, "spec": minimal}  # fmt: skip
    crd.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
    stored = json.loads(crd.kubectl("get", "md", "minimal", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"] == ModelDeploymentSpec.model_validate(minimal).to_wire()


def test_status_and_scale_subresources(crd, namespace):
    crd.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "canary.yaml"))
    status = {"status": {"phase": "Healthy", "canaryWeight": 0, "replicas": 2,
                         "selector": "app.kubernetes.io/instance=iris"}}  # fmt: skip
    crd.kubectl("patch", "md", "iris", "-n", namespace, "--subresource=status", "--type=merge",
                "-p", json.dumps(status))  # fmt: skip
    row = crd.kubectl("get", "md", "iris", "-n", namespace, "--no-headers").stdout.split()
    assert row[:4] == ["iris", "v1", "Healthy", "0"]

    # A spec update through the main resource never touches status, and the reverse.
    crd.kubectl("patch", "md", "iris", "-n", namespace, "--type=merge",
                "-p", json.dumps({"status": {"phase": "Failed"}}))  # fmt: skip
    phase = crd.kubectl("get", "md", "iris", "-n", namespace, "-o", "jsonpath={.status.phase}")
    assert phase.stdout == "Healthy"

    crd.kubectl("scale", "md", "iris", "-n", namespace, "--replicas=5")
    replicas = crd.kubectl(
        "get", "md", "iris", "-n", namespace, "-o", "jsonpath={.spec.serving.replicas}"
    )
    assert replicas.stdout == "5"


def test_kubectl_explain_shows_the_field_descriptions(crd):
    out = crd.kubectl("explain", "modeldeployments.spec.rollout.steps").stdout
    assert "setWeight" in out
    assert "Percent of traffic the new revision gets in this step" in out
