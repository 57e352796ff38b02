"""The Helm chart, rendered by the real helm (hack/helm.sh installs it into the cache).

Lint and render in each install mode, the schema refusing typos, the CRD copy in step with
crds/, monitoring objects only where their API exists, and the Grafana dashboard querying only
metrics the serving image and the operator really export.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modeldeploy"
DASHBOARD = CHART / "dashboards" / "modeldeploy.json"
MONITORING = ("--api-versions", "monitoring.coreos.com/v1")
ALL_MONITORS = (
    "--set",
    "metrics.serviceMonitor.enabled=true,metrics.podMonitor.enabled=true,"
    "metrics.prometheusRule.enabled=true",
)


@cache
def helm_binary() -> str:
    try:
        out = subprocess.run([str(ROOT / "hack" / "helm.sh")], capture_output=True, text=True,
                             timeout=600, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"helm cannot be installed: hack/helm.sh: {exc}")
    if out.returncode != 0:
        pytest.skip(f"helm cannot be installed (hack/helm.sh failed):\n{out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, check=False)


def render(*args: str, namespace: str = "modeldeploy-system") -> list[dict[str, Any]]:
    out = helm("template", "md", str(CHART), "--namespace", namespace, *args)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def test_lint_is_clean_in_every_mode():
    for extra in ([], ["--set", "watchNamespaces={ml,team-b}", "--set", "operator.replicas=2"],
                  ["--set", "operator.replicas=3", *ALL_MONITORS]):  # fmt: skip
        out = helm("lint", "--strict", str(CHART), *extra)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "0 chart(s) failed" in out.stdout
        assert "[WARNING]" not in out.stdout
        assert "[ERROR]" not in out.stdout


def test_default_render_is_a_cluster_wide_operator():
    docs = render()
    assert kinds(docs) == ["ClusterRole", "ClusterRole", "ClusterRoleBinding",
                           "ClusterRoleBinding", "ConfigMap", "Deployment", "Role",
                           "RoleBinding", "Service", "ServiceAccount"]  # fmt: skip
    deploy = one(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "modeldeploy/operator:dev"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["modeldeploy", "run"]
    assert container["args"] == ["--liveness-port=8080", "--metrics-port=9090",
                                 "--log-format=json", "--all-namespaces"]  # fmt: skip
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELDEPLOY_SERVING_IMAGE"] == "modeldeploy/serving:dev"
    assert env["MODELDEPLOY_RESYNC_SECONDS"] == "30"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}  # never two operators at once
    assert "KopfPeering" not in kinds(docs)
    assert "ClusterKopfPeering" not in kinds(docs)
    assert "PodDisruptionBudget" not in kinds(docs)  # it would block draining its node


def test_namespaced_install_gets_roles_and_watches_only_its_namespaces():
    docs = render("--set", "watchNamespaces={ml,team-b}")
    roles = [d for d in docs if d["kind"] == "Role" and d not in leader_election(docs)]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml", "team-b"]
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert all(b["subjects"][0]["namespace"] == "modeldeploy-system" for b in bindings)
    # Only the cluster-scoped reads stay cluster-wide.
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert [(r["resources"], r["verbs"]) for r in cluster_role["rules"]] == [
        (["customresourcedefinitions"], ["get", "list", "watch"]),
        (["namespaces"], ["list", "watch"]),
    ]
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=ml" in args
    assert "--namespace=team-b" in args
    assert "--all-namespaces" not in args
    # The same namespaced rules as the cluster-wide ClusterRole.
    cluster_wide = [d for d in render() if d["kind"] == "ClusterRole"]
    assert roles[0]["rules"] in [r["rules"] for r in cluster_wide]


def test_the_operator_may_watch_and_apply_every_child_kind():
    """The RBAC rules and the table of child kinds the operator watches name the same kinds."""
    from modeldeploy.core.children import CHILD_KINDS

    (role,) = [d for d in render() if d["kind"] == "ClusterRole" and any(
        "deployments" in r["resources"] for r in d["rules"])]  # fmt: skip
    for kind in CHILD_KINDS:
        verbs = {v for r in role["rules"] if kind.group in r["apiGroups"]
                 and kind.plural in r["resources"] for v in r["verbs"]}  # fmt: skip
        assert {"list", "watch", "create", "patch"} <= verbs, kind


def test_the_operator_may_delete_every_child_that_comes_and_goes():
    """The plan deletes a child no longer wanted (core/desired/optional.py): the role Services
    after a rollout, the PDB when one pod is left, the HPA, the route; and expired revisions."""
    from modeldeploy.core.children import DEPLOYMENT, child_kind
    from modeldeploy.core.desired.optional import optional_children
    from modeldeploy.core.traffic import ROUTED_KINDS

    (role,) = [d for d in render() if d["kind"] == "ClusterRole" and any(
        "deployments" in r["resources"] for r in d["rules"])]  # fmt: skip
    kinds = {DEPLOYMENT, *(child_kind(k) for k, _ in optional_children("x", ROUTED_KINDS))}
    assert {k.kind for k in kinds} >= {"Service", "PodDisruptionBudget"}
    for kind in kinds:
        verbs = {v for r in role["rules"] if kind.group in r["apiGroups"]
                 and kind.plural in r["resources"] for v in r["verbs"]}  # fmt: skip
        assert "delete" in verbs, kind


def leader_election(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["metadata"]["name"].endswith("-leader-election")]


def test_several_replicas_elect_a_leader_through_a_lease():
    docs = render("--set", "operator.replicas=2")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert not [a for a in container["args"] if a.startswith("--peering")]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELDEPLOY_LEADER_ELECTION"] == "true"
    assert env["MODELDEPLOY_LEASE_NAME"] == "md-modeldeploy"
    assert env["MODELDEPLOY_LEASE_NAMESPACE"] == "modeldeploy-system"
    timings = [env[f"MODELDEPLOY_LEASE_{t}_SECONDS"]
               for t in ("DURATION", "RENEW_DEADLINE", "RETRY_PERIOD")]  # fmt: skip
    assert timings == ["15", "10", "2"]
    assert "strategy" not in one(docs, "Deployment")["spec"]  # standbys start first
    assert "KopfPeering" not in kinds(docs)
    assert "ClusterKopfPeering" not in kinds(docs)
    # The Lease in the release namespace only: get, create, update.
    role, binding = sorted(leader_election(docs), key=lambda d: d["kind"])
    assert role["metadata"]["namespace"] == "modeldeploy-system"
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "update"]}]  # fmt: skip
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == one(docs, "ServiceAccount")["metadata"]["name"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]
    # A namespaced install keeps its Lease in the release namespace too, not a watched one.
    namespaced = render("--set", "operator.replicas=2", "--set", "watchNamespaces={ml}")
    assert {d["metadata"]["namespace"] for d in leader_election(namespaced)} == {
        "modeldeploy-system"}  # fmt: skip
    # Off: no Lease rules, and the operator is told so.
    off = render("--set", "operator.leaderElection.enabled=false")
    assert leader_election(off) == []
    env = {
        e["name"]: e["value"]
        for e in one(off, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MODELDEPLOY_LEADER_ELECTION"] == "false"


def test_the_chart_crd_is_the_generated_crd_byte_for_byte():
    name = "modeldeployments.modeldeploy.io.yaml"
    assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
        "charts/modeldeploy/crds differs from crds/: run make generate"
    )


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("replicaCount=2", "additional properties 'replicaCount' not allowed"),
        ("operator.imagee=x", "at '/operator': additional properties 'imagee' not allowed"),
        ("operator.image.tga=v1", "at '/operator/image': additional properties 'tga' not allowed"),
        ("metrics.podMonitor.intervall=5s", "additional properties 'intervall' not allowed"),
        ("operator.replicas=two", "at '/operator/replicas': got string, want integer"),
        ("operator.logFormat=yaml", "/operator/logFormat"),
    ],
)
def test_a_typo_in_values_fails_and_names_the_key(setting, says):
    for command in ("template", "lint"):
        out = helm(command, "md", str(CHART), "--set", setting) if command == "template" \
            else helm(command, str(CHART), "--set", setting)  # fmt: skip
        assert out.returncode != 0, f"helm {command} accepted --set {setting}"
        assert says in out.stdout + out.stderr


def test_monitoring_objects_only_where_the_api_exists():
    without = kinds(render(*ALL_MONITORS))
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & set(without)
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & set(kinds(render(*MONITORING)))
    docs = render(*MONITORING, *ALL_MONITORS)
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} <= set(kinds(docs))
    pod_monitor = one(docs, "PodMonitor")
    relabel = pod_monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_label_modeldeploy_io_revision"],
            "targetLabel": "revision"} in relabel  # fmt: skip
    assert {"sourceLabels": ["__meta_kubernetes_namespace"], "targetLabel": "namespace"} in relabel
    assert pod_monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/managed-by"] == (
        "modeldeploy"
    )
    alerts = [r["alert"] for g in one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    assert {"ModelHighErrorRate", "ModelHighLatencyP99", "ModelRolledBack"} <= set(alerts)
    assert "authorization" not in pod_monitor["spec"]["podMetricsEndpoints"][0]


def test_the_pod_monitor_presents_the_scrape_token_when_given():
    """Model servers with auth keep the drift families from scrapes without credentials; the
    PodMonitor sends the scrape token from a Secret so Prometheus still reads them."""
    token = ("--set", "metrics.podMonitor.scrapeTokenSecret.name=modelserve-scrape")
    endpoint = one(render(*MONITORING, *ALL_MONITORS, *token), "PodMonitor")["spec"][
        "podMetricsEndpoints"
    ][0]
    assert endpoint["authorization"] == {
        "type": "Bearer", "credentials": {"name": "modelserve-scrape", "key": "token"}}  # fmt: skip
    keyed = render(*MONITORING, *ALL_MONITORS, *token,
                   "--set", "metrics.podMonitor.scrapeTokenSecret.key=scrape")  # fmt: skip
    credentials = one(keyed, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["authorization"]
    assert credentials["credentials"]["key"] == "scrape"
    assert helm("lint", "--strict", str(CHART), *ALL_MONITORS, *token).returncode == 0
    typo = helm("template", "md", str(CHART), "--set", "metrics.podMonitor.scrapeTokenSecret.nam=x")
    assert typo.returncode != 0
    assert "additional properties 'nam' not allowed" in typo.stderr


# --- the metrics the dashboard and the alerts query ----------------------------------------


def exported_names() -> set[str]:
    """Every series name the serving image and the operator expose, as Prometheus sees them."""
    from prometheus_client import REGISTRY

    import modeldeploy.runtime.operator_metrics  # noqa: F401  (registers the operator's metrics)
    from modelserve.metrics import Metrics

    # The drift families sit in a registry of their own, served only to trusted scrapes.
    served = Metrics(model="m", version="v")
    families = [*served.registry.collect(), *served.payload_registry.collect(),
                *REGISTRY.collect()]  # fmt: skip
    names: set[str] = set()
    for family in families:
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        elif family.type == "info":
            names.add(f"{family.name}_info")
        else:
            names.add(family.name)
    return {n for n in names if n.startswith(("modelserve_", "modeldeploy_"))}


_METRIC = re.compile(r"\b(model(?:serve|deploy)_[a-zA-Z0-9_:]*)")


def queried_names(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            queries.append(var["query"]["query"])
    return queries


def test_the_exported_metric_names_are_what_the_dashboard_expects():
    names = exported_names()
    # The names the dashboard is built on, as a guard against a renamed metric.
    for expected in ("modelserve_requests_total", "modelserve_request_duration_seconds_bucket",
                     "modelserve_batch_size_count", "modelserve_input_feature_variance",
                     "modeldeploy_rollout_canary_weight_percent", "modeldeploy_phase",
                     "modeldeploy_reconcile_duration_seconds_bucket"):  # fmt: skip
        assert expected in names


def test_the_dashboard_parses_and_queries_only_metrics_that_exist():
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names()
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 20
    used: set[str] = set()
    for expr in queries:
        found = queried_names(expr)
        assert found, f"queries no modelserve_/modeldeploy_ metric: {expr}"
        assert found <= exported, f"unknown metrics {sorted(found - exported)} in: {expr}"
        used |= found
    # Every family of the list has a panel.
    for family in ("modelserve_requests_total", "modelserve_request_duration_seconds",
                   "modelserve_inference_duration_seconds", "modelserve_batch_size",
                   "modelserve_queue_depth", "modelserve_inflight_requests",
                   "modelserve_model_load_seconds", "modelserve_input_feature_mean",
                   "modelserve_input_feature_variance", "modeldeploy_rollout_canary_weight_percent",
                   "modeldeploy_rollout_step", "modeldeploy_phase",
                   "modeldeploy_analysis_checks_total", "modeldeploy_rollout_outcomes_total",
                   "modeldeploy_reconciles_total", "modeldeploy_reconcile_duration_seconds",
                   "modeldeploy_api_writes_total", "modeldeploy_managed_objects"):  # fmt: skip
        assert any(u == family or u.startswith(family + "_") for u in used), family
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_ships_as_a_configmap_grafana_loads():
    configmap = one(render(), "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (shipped,) = configmap["data"].values()
    assert json.loads(shipped) == json.loads(DASHBOARD.read_text())
    assert "ConfigMap" not in kinds(render("--set", "dashboard.enabled=false"))


def test_the_alerts_query_only_metrics_that_exist():
    rule = one(render(*MONITORING, *ALL_MONITORS), "PrometheusRule")
    exported = exported_names()
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            found = queried_names(alert["expr"])
            assert found, alert["alert"]
            assert found <= exported, alert["alert"]


def test_notes_tell_the_next_step():
    out = helm("install", "md", str(CHART), "--dry-run=client", "--namespace", "ops")
    assert out.returncode == 0, out.stderr
    notes = out.stdout.split("NOTES:", 1)[1]
    assert "kubectl apply -f examples/canary.yaml" in notes
    assert "kubectl get md -A -w" in notes
    assert "kubectl rollout status deployment/md-modeldeploy -n ops" in notes
