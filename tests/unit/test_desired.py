"""The child builders: what a platform team would check in `kubectl get -o yaml`."""

from __future__ import annotations

import json

import pytest

from modeldeploy.api.spec import Autoscaling, ModelDeploymentSpec
from modeldeploy.core.children import HTTP_ROUTE
from modeldeploy.core.desired.deployment import build_deployment, model_location
from modeldeploy.core.desired.optional import optional_children, unwanted
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.desired.scaling import build_hpa, build_pdb, pdb_exists
from modeldeploy.core.desired.services import (
    build_services,
    canary_service_exists,
    stable_service_exists,
)
from modeldeploy.core.references import Reference, references
from modeldeploy.core.settings import Settings

OWNER = Owner("fraud", "ml", "uid-1")


def spec(**serving):
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"uri": "https://m/fraud.onnx", "version": "v7", "sha256": "f" * 64},
            "serving": serving,
        }
    )


def env_of(deployment):
    return {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def test_deployment_is_owned_labelled_and_selects_its_revision():
    d = build_deployment(OWNER, spec(), Settings(), "fraud-abc", 2)
    meta = d["metadata"]
    assert meta["ownerReferences"] == [OWNER.reference()]
    assert OWNER.reference()["controller"] is True
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "modeldeploy"
    assert meta["labels"]["modeldeploy.io/revision"] == "fraud-abc"
    selector = d["spec"]["selector"]["matchLabels"]
    pod_labels = d["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert pod_labels["app.kubernetes.io/version"] == "v7"
    assert d["spec"]["replicas"] == 2


def test_pod_is_hardened():
    pod = build_deployment(OWNER, spec(), Settings(), "fraud-abc", 1)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["automountServiceAccountToken"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert container["resources"]["requests"]["cpu"]  # the HPA needs a CPU request


def test_server_configuration_comes_from_the_spec():
    d = build_deployment(
        OWNER,
        spec(
            batching={"maxBatchSize": 16, "maxDelayMs": 3},
            threads={"intraOp": 2},
            env=[{"name": "EXTRA", "value": "1"}],
            image="my/serve:2",
        ),
        Settings(),
        "fraud-abc",
        1,
    )
    env = env_of(d)
    assert env["MODELSERVE_MODEL"] == "https://m/fraud.onnx"
    assert env["MODELSERVE_SHA256"] == "f" * 64
    assert env["MODELSERVE_NAME"] == "fraud"
    assert env["MODELSERVE_MAX_BATCH_SIZE"] == "16"
    assert env["MODELSERVE_INTRA_OP_THREADS"] == "2"
    assert env["EXTRA"] == "1"
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "my/serve:2"


def test_default_image_and_hpa_owned_replicas():
    d = build_deployment(
        OWNER, spec(), Settings(serving_image="reg/modelserve:9"), "fraud-abc", None
    )
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/modelserve:9"
    assert "replicas" not in d["spec"]


def test_pvc_models_are_mounted_read_only():
    uri, volumes, mounts = model_location("pvc://models/fraud/v7.onnx")
    assert uri == "file:///mnt/models/models/fraud/v7.onnx"
    assert volumes[0]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert mounts[0]["readOnly"] is True


@pytest.mark.parametrize("auth_type", ["BearerToken", "JWT"])
def test_auth_secret_is_mounted_not_put_in_env(auth_type):
    d = build_deployment(
        OWNER, spec(auth={"type": auth_type, "secretRef": {"name": "tok"}}), Settings(), "r", 1
    )
    pod = d["spec"]["template"]["spec"]
    assert {"name": "auth", "secret": {"secretName": "tok"}} in pod["volumes"]
    env = pod["containers"][0]["env"]
    assert all("valueFrom" not in e for e in env), "credentials must not be in the environment"
    files = [e["value"] for e in env if e["name"].endswith("_FILE")]
    assert files == ["/etc/modelserve/auth/token"]


def test_services_select_roles():
    entry, stable, canary = build_services(OWNER, "fraud-old", "fraud-new")
    assert entry["metadata"]["name"] == "fraud"
    assert entry["spec"]["selector"] == {"modeldeploy.io/deployment": "fraud"}
    assert stable["spec"]["selector"]["modeldeploy.io/revision"] == "fraud-old"
    assert canary["spec"]["selector"]["modeldeploy.io/revision"] == "fraud-new"
    # At rest the entry Service alone: the router makes it select the stable revision.
    (alone,) = build_services(OWNER, "fraud-old", None, entry={"modeldeploy.io/revision": "x"})
    assert alone["metadata"]["name"] == "fraud"
    assert alone["spec"]["selector"] == {"modeldeploy.io/revision": "x"}


def test_role_services_exist_only_with_a_candidate():
    assert canary_service_exists("fraud-new")
    assert stable_service_exists("fraud-new")
    assert not canary_service_exists(None)
    assert not stable_service_exists(None)


@pytest.mark.parametrize(
    ("replicas", "autoscaling", "exists"),
    [
        (0, None, False),
        (1, None, False),  # maxUnavailable 1 would let a drain take the lone pod anyway
        (2, None, True),
        (5, Autoscaling(min_replicas=1, max_replicas=4), False),  # the HPA's floor decides
        (1, Autoscaling(min_replicas=2, max_replicas=4), True),
    ],
)
def test_pdb_exists_only_where_it_protects_a_second_pod(replicas, autoscaling, exists):
    assert pdb_exists(replicas, autoscaling) is exists


def test_an_optional_child_no_longer_wanted_is_deleted_unless_a_route_still_sends_to_it():
    optional = optional_children("fraud", [HTTP_ROUTE])
    assert set(optional) == {
        ("HorizontalPodAutoscaler", "fraud"),
        ("PodDisruptionBudget", "fraud"),
        ("HTTPRoute", "fraud"),
        ("Service", "fraud-stable"),
        ("Service", "fraud-canary"),
    }
    wanted = build_services(OWNER, "fraud-new", None)
    live = {key: {} for key in [*optional, ("Service", "fraud")]}
    assert set(unwanted(optional, wanted, live)) == set(optional)
    assert unwanted(optional, wanted, {("Service", "fraud"): {}}) == []  # nothing to delete
    route = {"spec": {"rules": [{"backendRefs": [{"name": "fraud"}, {"name": "fraud-canary"}]}]}}
    live = {("Service", "fraud-canary"): {}, ("HTTPRoute", "fraud"): route}
    assert unwanted(optional, [*wanted, {"kind": "HTTPRoute", "metadata": {"name": "fraud"}}],
                    live) == []  # fmt: skip


def test_hpa_targets_the_stable_revision_and_pdb_covers_all_pods():
    hpa = build_hpa(OWNER, Autoscaling(min_replicas=2, max_replicas=9), "fraud-old")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "fraud-old"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 9)
    pdb = build_pdb(OWNER)
    assert pdb["spec"]["selector"]["matchLabels"] == {"modeldeploy.io/deployment": "fraud"}


def test_batching_is_asked_for_only_when_the_spec_sets_it():
    """The server batches only on MODELSERVE_BATCHING=true: a model that combines rows along
    its first axis must never see other clients' rows unless its owner asked for batching."""
    plain = env_of(build_deployment(OWNER, spec(), Settings(), "fraud-abc", 1))
    assert "MODELSERVE_BATCHING" not in plain
    asked = env_of(
        build_deployment(OWNER, spec(batching={"maxBatchSize": 8}), Settings(), "fraud-abc", 1)
    )
    assert asked["MODELSERVE_BATCHING"] == "true"
    assert asked["MODELSERVE_MAX_BATCH_SIZE"] == "8"


SAMPLE = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def test_inline_warmup_samples_reach_the_server_as_a_file():
    d = build_deployment(OWNER, spec(warmup={"samples": [SAMPLE]}), Settings(), "fraud-abc", 1)
    template = d["spec"]["template"]
    pod = template["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "warmup")
    item = volume["downwardAPI"]["items"][0]
    annotation = item["fieldRef"]["fieldPath"].split("'")[1]
    # What the server reads is exactly the samples the user wrote, as a JSON array.
    assert json.loads(template["metadata"]["annotations"][annotation]) == [SAMPLE]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "warmup")
    assert mount["readOnly"] is True
    assert env_of(d)["MODELSERVE_WARMUP_FILE"] == f"{mount['mountPath']}/{item['path']}"


def test_warmup_samples_from_a_config_map_key_and_its_reference():
    ref = {"name": "iris-samples", "key": "v2.json"}
    s = spec(warmup={"configMapKeyRef": ref})
    d = build_deployment(OWNER, s, Settings(), "fraud-abc", 1)
    pod = d["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "warmup")
    assert volume["configMap"] == {
        "name": "iris-samples",
        "items": [{"key": "v2.json", "path": "samples.json"}],
    }
    assert env_of(d)["MODELSERVE_WARMUP_FILE"].endswith("/samples.json")
    # A missing ConfigMap is reported on the field that names it, not left as a stuck pod.
    assert Reference("ConfigMap", "iris-samples", "spec.serving.warmup.configMapKeyRef.name") in (
        references(s)
    )


def test_a_warmup_sample_without_inputs_is_refused_offline():
    with pytest.raises(ValueError, match="needs `inputs`"):
        spec(warmup={"samples": [{"parameters": {}}]})
