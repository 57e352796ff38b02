"""A ModelDeployment on several nodes (kind-config.yaml: a control plane and two workers): its
pods spread over the workers, its entry Service answers a pod on a node that serves nothing, a
worker drained mid-rollout fails no request (the PodDisruptionBudget lets one pod go at a
time), and `status.url` answers from a pod through cluster DNS.

On a cluster with one schedulable node (the real-node tier) the multi-node tests skip and say
why; the DNS test needs only cluster DNS (kube-dns), wherever it runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from e2ekit import (
    apply,
    has_cluster_dns,
    kubectl_json,
    pod_nodes,
    run_client_script,
    schedulable_nodes,
)

# The operator installed by its chart, the sample model and the load client, as the rollout
# tests run them (crd and operator are fixtures).
from test_rollout import (  # noqa: F401
    ROWS,
    V1,
    V1_LABELS,
    V2_LABELS,
    Load,
    crd,
    md,
    operator,
    serve,
    start_model_store,
    status,
    wait_for,
)

import localkube

REPO = Path(__file__).resolve().parents[2]
NAME = "iris"
SERVING_PODS = f"app.kubernetes.io/name=modelserve,app.kubernetes.io/instance={NAME}"
# Runs in a client pod: n inference requests; one JSON line per answer (status, labels).
INFER_SCRIPT = """
import json, sys, urllib.request
url, n, rows = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
body = json.dumps({"inputs": [{"name": "input", "shape": [len(rows), 4], "datatype": "FP32",
                               "data": rows}]}).encode()
for _ in range(n):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urlopen_retrying(req) as response:
        answer = json.load(response)
    label = next(o for o in answer["outputs"] if o["name"] == "label")["data"]
    print(json.dumps({"status": response.status, "label": label}), flush=True)
"""
# Runs in a client pod: GET the URL (found through cluster DNS), print status and JSON body.
GET_SCRIPT = """
import json, socket, sys, urllib.parse
url = sys.argv[1]
host = urllib.parse.urlsplit(url).hostname
with urlopen_retrying(url) as response:
    body = json.load(response)
print(json.dumps({"address": socket.gethostbyname(host), "status": response.status,
                  "body": body}), flush=True)
"""


@pytest.fixture(scope="module")
def crd_handed_back(cluster: localkube.Cluster) -> Iterator[None]:
    """After this module's operator is uninstalled, give the CRD's fields back to kubectl: helm
    took them over, and the next module's server-side apply of crds/ would conflict with it."""
    yield
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))


@pytest.fixture
def workers(cluster: localkube.Cluster) -> list[str]:
    """The schedulable nodes; skips on a cluster with fewer than two."""
    nodes = schedulable_nodes(cluster)
    if len(nodes) < 2:
        pytest.skip(
            f"needs two or more schedulable nodes (make kind-e2e: a control plane and two "
            f"workers); this cluster has {len(nodes)}: {', '.join(nodes) or 'none'}"
        )
    return nodes


def spread(doc: dict[str, Any]) -> dict[str, Any]:
    """At most one serving pod more on any schedulable node than on another. Honor: tainted
    (control plane) and cordoned nodes are not places to spread over."""
    doc["spec"]["serving"]["topologySpreadConstraints"] = [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": "Honor",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": NAME}},
    }]  # fmt: skip
    return doc


def other_nodes(cluster: localkube.Cluster, busy: set[str]) -> list[str]:
    """Every node not in busy (the control plane included)."""
    names = [n["metadata"]["name"] for n in kubectl_json(cluster, "get", "nodes")["items"]]
    return sorted(set(names) - busy)


@pytest.mark.usefixtures("crd_handed_back", "operator")
def test_serving_pods_spread_over_the_workers(
    cluster: localkube.Cluster, namespace: str, workers: list[str]
) -> None:
    serve(cluster, namespace, NAME, V1, "v1", spread(md(NAME, V1, "v1")))
    nodes = pod_nodes(cluster, namespace, SERVING_PODS)
    print(f"serving pods by node: {nodes}", file=sys.stderr)
    assert len(nodes) == 2, nodes
    assert set(nodes.values()) <= set(workers), nodes
    assert len(set(nodes.values())) == 2, f"both pods on one node: {nodes}"


@pytest.mark.usefixtures("crd_handed_back", "operator", "workers")
def test_the_entry_service_answers_a_pod_on_a_node_that_serves_nothing(
    cluster: localkube.Cluster, namespace: str
) -> None:
    url = serve(cluster, namespace, NAME, V1, "v1", spread(md(NAME, V1, "v1")))
    serving = set(pod_nodes(cluster, namespace, SERVING_PODS).values())
    elsewhere = other_nodes(cluster, serving)
    assert elsewhere, f"serving pods on every node: {serving}"
    lines = run_client_script(
        cluster, namespace, "client", INFER_SCRIPT, url, "20", json.dumps(ROWS),
        node=elsewhere[0],
    )  # fmt: skip
    answers = [json.loads(line) for line in lines]
    print(f"client on {elsewhere[0]}, serving pods on {sorted(serving)}", file=sys.stderr)
    assert len(answers) == 20
    assert all(a["status"] == 200 and a["label"] == V1_LABELS for a in answers), answers


@pytest.mark.usefixtures("crd_handed_back", "operator")
def test_status_url_answers_from_a_pod_through_cluster_dns(
    cluster: localkube.Cluster, namespace: str
) -> None:
    if not has_cluster_dns(cluster):
        pytest.skip("the cluster deploys no cluster DNS (no kube-system/kube-dns Service)")
    serve(cluster, namespace, NAME, V1, "v1")
    url = status(cluster, namespace, NAME)["url"]
    assert url == f"http://{NAME}.{namespace}.svc/v2/models/{NAME}"
    lines = run_client_script(cluster, namespace, "dns-client", GET_SCRIPT, url)
    answer = json.loads(lines[-1])
    print(f"GET {url} from a pod: {answer}", file=sys.stderr)
    entry_ip = kubectl_json(cluster, "get", "service", NAME, "-n", namespace)["spec"]["clusterIP"]
    assert answer["address"] == entry_ip
    assert answer["status"] == 200
    assert answer["body"]["name"] == NAME


@pytest.mark.usefixtures("crd_handed_back", "operator")
def test_draining_a_worker_mid_rollout_fails_no_request(
    cluster: localkube.Cluster, namespace: str, workers: list[str]
) -> None:
    store = start_model_store(cluster, namespace)
    store_nodes = set(pod_nodes(cluster, namespace, "app=models").values())
    url = serve(cluster, namespace, NAME, V1, "v1", spread(md(NAME, V1, "v1")))
    pdb = kubectl_json(cluster, "get", "pdb", NAME, "-n", namespace)
    assert pdb["spec"]["maxUnavailable"] == 1
    # The load client runs where no drain reaches it: on a node that is not a worker.
    (client_node, *_) = other_nodes(cluster, set(workers)) or pytest.skip("no control plane")
    load = Load(cluster, namespace, url)
    pod_spec = cast(dict[str, Any], load.pod["spec"])
    pod_spec["nodeName"] = client_node
    pod_spec["tolerations"] = [{"operator": "Exists"}]
    drained = ""
    with load:
        wait_for(lambda: load.codes[200] >= 20, "requests answered by v1")
        apply(cluster, namespace, spread(md(NAME, f"{store}/iris-v2.onnx", "v2")))
        wait_for(lambda: status(cluster, namespace, NAME).get("canaryWeight", 0) > 0,
                 "the canary taking traffic")  # fmt: skip
        # A worker with a serving pod, not the one holding the model store (the canary may
        # still be fetching from it).
        serving = pod_nodes(cluster, namespace, SERVING_PODS)
        candidates = sorted(set(serving.values()) - store_nodes) or sorted(set(serving.values()))
        drained = candidates[0]
        print(f"draining {drained}; serving pods: {serving}", file=sys.stderr)
        try:
            cluster.kubectl("drain", drained, "--ignore-daemonsets", "--delete-emptydir-data",
                            "--timeout=240s")  # fmt: skip
            wait_for(
                lambda: (status(cluster, namespace, NAME).get("stableRevision") or {}).get(
                    "modelVersion"
                ) == "v2",
                "v2 promoted after the drain", timeout=300,
            )  # fmt: skip
            after = pod_nodes(cluster, namespace, SERVING_PODS)
            print(f"after the drain: {after}", file=sys.stderr)
            assert drained not in after.values()
        finally:
            cluster.kubectl("uncordon", drained, check=False)
    print(f"answers during the drain: {dict(load.codes)}", file=sys.stderr)
    assert load.codes[200] > 0
    assert set(load.codes) == {200}, f"failed requests while {drained} drained: {load.codes}"
    assert tuple(V2_LABELS) in load.labels
