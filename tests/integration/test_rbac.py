"""The chart's RBAC is enough, and every rule in it is needed: the operator runs as the chart's
ServiceAccount (a token minted for it), against the real API server's RBAC authorizer.

One scenario exercises each permission the operator has (tier 1: no pods run):
- `iris` (the canary example, with autoscaling from 2 pods and revisionHistoryLimit 0) gets its
  Deployment, entry Service, PDB and HPA, an Event, and status.observedGeneration; a stale revision
  Deployment of it is deleted; dropping autoscaling (down to 1 replica) deletes the HPA and PDB;
- `refs` names a Secret, a ConfigMap and a claim that do not exist: Degraded, naming all three;
- `hooked` has a preRollout hook with a 1 s timeout: its second version gets the hook's Job,
  which the Job controller fails past its deadline (no pod runs), and the operator reads the
  verdict from its watch of Jobs (status.hooks); the rollback deletes its preview Service;
- `routed` uses gatewayAPI routing (an HTTPRoute CRD is installed after the operator started,
  so the operator must notice new CRDs): its HTTPRoute is created, and deleted when the spec
  switches back to replicaRatio.

Then each verb of each rule is taken away in turn (list and watch together) from an operator of
its own in a namespace of its own, all run side by side with a control that has every rule,
and the scenario must not complete within max(20 s, 3 x the control's time). `namespaces:
list, watch` (namespaced installs) only delays the start by about a minute, which 28 operators
starting at once would hide: a test of its own proves it.
Not proven here: pods list and pods/proxy get (the pods analysis provider scrapes ready pods
only, and no pod runs without a node; tests/e2e covers them). The leader-election Lease rules
(get, create, update) are proven like the others: cutting any one stops the scenario.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from speccases import EXAMPLES

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modeldeploy"
RESYNC_SECONDS = 2
MIN_WINDOW = 20.0


# --- the chart's RBAC, rendered and cut ------------------------------------------------------


def helm_binary() -> str:
    out = subprocess.run([str(ROOT / "hack" / "helm.sh")], capture_output=True, text=True,
                         check=False)  # fmt: skip
    if out.returncode != 0:
        pytest.skip(f"helm cannot be installed (hack/helm.sh failed):\n{out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def render_rbac(helm: str, release: str, namespace: str, *values: str) -> list[dict[str, Any]]:
    """The chart's ServiceAccount, (Cluster)Roles and bindings for one release."""
    out = subprocess.run(
        [helm, "template", release, str(CHART), "--namespace", namespace,
         "--set", f"fullnameOverride={release}", *values,
         "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@dataclass(frozen=True)
class Cut:
    """Verbs taken away from one (apiGroup, resource) of the chart's rules."""

    group: str
    resource: str
    verbs: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.resource}-{'-'.join(self.verbs)}".replace("/", "-")

    def apply(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found = False
        for doc in docs:
            if doc["kind"] not in ("ClusterRole", "Role"):
                continue
            rules = []
            for rule in doc["rules"]:
                if self.group in rule["apiGroups"] and self.resource in rule["resources"]:
                    assert set(self.verbs) <= set(rule["verbs"]), (self, rule)
                    found = True
                    rest = [r for r in rule["resources"] if r != self.resource]
                    if rest:
                        rules.append({**rule, "resources": rest})
                    verbs = [v for v in rule["verbs"] if v not in self.verbs]
                    if verbs:
                        rules.append({**rule, "resources": [self.resource], "verbs": verbs})
                else:
                    rules.append(rule)
            doc["rules"] = rules
        assert found, f"the chart has no rule for {self}"
        return docs


def cuts_of(docs: list[dict[str, Any]]) -> list[Cut]:
    """One cut per verb of every rule, but list and watch together (kopf's watch streams use
    both, always)."""
    cuts: list[Cut] = []
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in doc["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    streams = tuple(v for v in rule["verbs"] if v in ("list", "watch"))
                    if streams:
                        cuts.append(Cut(group, resource, streams))
                    cuts.extend(Cut(group, resource, (v,)) for v in rule["verbs"]
                                if v not in streams)  # fmt: skip
    return cuts


# Not provable on a control plane without a node (see the module docstring).
UNPROVEN = {("", "pods", ("list",)), ("", "pods/proxy", ("get",))}
# Needed at startup only (kopf retries it for about a minute before falling back), so hidden
# while 29 operators start at once: proven by a test of its own.
NAMESPACES = Cut("", "namespaces", ("list", "watch"))


# --- an operator running as a ServiceAccount --------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token_kubeconfig(cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates with a fresh token of the ServiceAccount."""
    token = cluster.kubectl("create", "token", account, "-n", namespace,
                            "--duration=2h").stdout.strip()  # fmt: skip
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    server = dict(admin["clusters"][0]["cluster"])
    if "certificate-authority" in server:
        ca = Path(server.pop("certificate-authority"))
        if not ca.is_absolute():
            ca = Path(cluster.kubeconfig).parent / ca
        server["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": server}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": account,
                                                "namespace": namespace}}],
    }))  # fmt: skip
    return path


@dataclass
class Operator:
    proc: subprocess.Popen[str]
    liveness_port: int
    log: Path

    def healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.liveness_port}/healthz"
        try:
            return urllib.request.urlopen(url, timeout=2).status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_operator(kubeconfig: Path, workdir: Path, scope: list[str]) -> Operator:
    log, tmp = workdir / "operator.log", workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    liveness = _free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "TMPDIR": str(tmp),
           "MODELDEPLOY_RESYNC_SECONDS": str(RESYNC_SECONDS)}  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modeldeploy.cli", "run", *scope, "--metrics-port=0",
             f"--liveness-port={liveness}"],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    return Operator(proc, liveness, log)


# --- the scenario -------------------------------------------------------------------------


def model(name: str, **spec: Any) -> dict[str, Any]:
    doc = yaml.safe_load((EXAMPLES / "canary.yaml").read_text())
    doc["metadata"] = {"name": name}
    doc["spec"].update(spec)
    return doc


def stale_revision() -> dict[str, Any]:
    """A revision Deployment of `iris` older than any the operator will make: with
    revisionHistoryLimit 0 the operator deletes it."""
    labels = {"app.kubernetes.io/managed-by": "modeldeploy", "modeldeploy.io/deployment": "iris",
              "modeldeploy.io/revision": "iris-stale"}  # fmt: skip
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "iris-stale", "labels": labels},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "modelserve", "image": "modeldeploy/serving:dev"}]},
        }},
    }  # fmt: skip


class Scenario:
    """The scenario in one namespace, advanced by `poll()`; `missing()` names what is not done."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.ns = api, namespace
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.done: dict[str, bool] = dict.fromkeys(
            ["children", "observedGeneration", "event", "stale deleted", "refs Degraded",
             "HPA deleted", "HTTPRoute created", "HTTPRoute deleted", "hook Job created",
             "hook verdict read", "PDB deleted", "preview Service deleted"], False)  # fmt: skip
        self.hpa_dropped = self.route_dropped = self.hook_due = False
        self.started = time.monotonic()
        self.when: dict[str, float] = {}

    def start(self) -> None:
        self.started = time.monotonic()
        self.apps.create_namespaced_deployment(self.ns, stale_revision())
        iris = model("iris", autoscaling={"minReplicas": 2, "maxReplicas": 3},
                     revisionHistoryLimit=0)  # fmt: skip
        refs = model("refs")
        refs["spec"]["model"]["uri"] = "pvc://missing-claim/iris.onnx"
        refs["spec"]["serving"]["auth"] = {"secretRef": {"name": "missing-token"}}
        refs["spec"]["serving"]["env"] = [{"name": "X", "valueFrom": {"configMapKeyRef": {
            "name": "missing-config", "key": "x"}}}]  # fmt: skip
        routed = model("routed")
        routed["spec"]["rollout"]["trafficRouting"] = {
            "gatewayAPI": {"parentRefs": [{"name": "gw"}]}
        }
        hooked = model("hooked")
        hooked["spec"]["rollout"]["hooks"] = {"preRollout": [{"name": "smoke", "timeout": "1s",
            "job": {"template": {"spec": {"containers": [
                {"name": "smoke", "image": "modeldeploy/echo:dev"}]}}}}]}  # fmt: skip
        for doc in (iris, refs, routed, hooked):
            self.custom.create_namespaced_custom_object(
                "modeldeploy.io", "v1alpha1", self.ns, "modeldeployments", doc
            )

    def _md(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "modeldeploy.io", "v1alpha1", self.ns, "modeldeployments", name
        )
        return obj

    def _patch(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            "modeldeploy.io", "v1alpha1", self.ns, "modeldeployments", name, patch
        )

    def _routes(self) -> list[str]:
        items = self.custom.list_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", self.ns, "httproutes"
        )["items"]
        return [i["metadata"]["name"] for i in items]

    def poll(self) -> None:
        ns, done = self.ns, self.done
        deployments = {d.metadata.name for d in self.apps.list_namespaced_deployment(ns).items}
        services = {s.metadata.name for s in self.core.list_namespaced_service(ns).items}
        pdbs = client.PolicyV1Api(self.api).list_namespaced_pod_disruption_budget(ns).items
        hpas = client.AutoscalingV2Api(self.api).list_namespaced_horizontal_pod_autoscaler(ns)
        has_hpa = any(h.metadata.name == "iris" for h in hpas.items)
        revision = any(d.startswith("iris-") and d != "iris-stale" for d in deployments)
        if not self.hpa_dropped:
            has_pdb = any(p.metadata.name == "iris" for p in pdbs)
            entry = "iris" in services  # at rest: no role Services (no candidate)
            done["children"] = revision and entry and has_pdb and has_hpa
            if done["children"]:
                self._patch("iris", {"spec": {"autoscaling": None, "serving": {"replicas": 1}}})
                self.hpa_dropped = True
        else:
            done["HPA deleted"] = not has_hpa
            done["PDB deleted"] = not any(p.metadata.name == "iris" for p in pdbs)
        iris = self._md("iris")
        done["observedGeneration"] = (iris.get("status") or {}).get("observedGeneration") == (
            iris["metadata"]["generation"]
        )
        done["stale deleted"] = "iris-stale" not in deployments
        events = self.core.list_namespaced_event(ns, field_selector="involvedObject.name=iris")
        done["event"] = any(e.reason == "RevisionCreated" for e in events.items)
        conditions = (self._md("refs").get("status") or {}).get("conditions") or []
        degraded = next((c for c in conditions if c["type"] == "Degraded"), {})
        done["refs Degraded"] = degraded.get("status") == "True" and all(
            name in degraded.get("message", "")
            for name in ("missing-token", "missing-config", "missing-claim")
        )
        routes = self._routes()
        if not self.route_dropped:
            done["HTTPRoute created"] = "routed" in routes
            if done["HTTPRoute created"]:
                self._patch("routed", {"spec": {"rollout": {"trafficRouting": {
                    "gatewayAPI": None, "replicaRatio": {}}}}})  # fmt: skip
                self.route_dropped = True
        else:
            done["HTTPRoute deleted"] = "routed" not in routes

        hooked = self._md("hooked")
        if not self.hook_due and (hooked.get("status") or {}).get("stableRevision"):
            self._patch("hooked", {"spec": {"model": {"version": "v2"}}})  # a candidate
            self.hook_due = True
        jobs = client.BatchV1Api(self.api).list_namespaced_job(ns).items
        done["hook Job created"] = any(j.metadata.name.startswith("hooked-hook-") for j in jobs)
        runs = (hooked.get("status") or {}).get("hooks") or []
        done["hook verdict read"] = any(r.get("verdict") == "Failed" for r in runs)
        # The plan that made the candidate (and so the hook's Job) applied hooked-canary first;
        # it may come and go between two polls, so its absence after the verdict is the proof.
        done["preview Service deleted"] = done["hook verdict read"] and (
            "hooked-canary" not in services
        )

        for name, ok in done.items():
            if ok:
                self.when.setdefault(name, round(time.monotonic() - self.started, 1))

    def missing(self) -> list[str]:
        return [name for name, ok in self.done.items() if not ok]


@dataclass
class Case:
    name: str
    namespace: str
    cut: Cut | None
    operator: Operator | None = None
    scenario: Scenario | None = None
    finished_at: float | None = None
    errors: list[str] = field(default_factory=list)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


@pytest.fixture(scope="module")
def admin(crd) -> client.ApiClient:
    return config.new_client_from_config(str(crd.kubeconfig))  # type: ignore[no-untyped-call]


def _namespaces(crd, names: list[str]) -> None:
    for name in names:
        crd.kubectl("create", "namespace", name)


def _settle(cases: list[Case], control: Case, deadline: float) -> None:
    """Poll every case until each completed or the window closed: max(MIN_WINDOW, 3 x the
    control's time) after the scenarios started (the control is cases[0])."""
    start = time.monotonic()
    while time.monotonic() < deadline:
        for case in cases:
            if case.finished_at is not None:
                continue
            assert case.scenario is not None
            try:
                case.scenario.poll()
            except ApiException as exc:
                case.errors.append(f"{exc.status} {exc.reason}")
            if not case.scenario.missing():
                case.finished_at = time.monotonic() - start
        if all(c.finished_at is not None for c in cases):
            return
        window = None if control.finished_at is None else max(MIN_WINDOW, 3 * control.finished_at)
        if window is not None and time.monotonic() - start > window:
            return
        time.sleep(0.5)


def _run(crd, admin, helm, cases: list[Case], install_crd: Callable[[], None], tmp: Path,
         *, namespaced: bool, deadline: float) -> None:  # fmt: skip
    """Start one operator per case (cases[0] is the control), install the HTTPRoute CRD,
    start the scenarios, settle. Namespaced: the chart's `watchNamespaces` install, each
    operator watching only its case's namespace (so that they can run side by side)."""
    try:
        for case in cases:
            values = ("--set", f"watchNamespaces={{{case.namespace}}}") if namespaced else ()
            scope = [f"--namespace={case.namespace}"] if namespaced else ["--all-namespaces"]
            docs = render_rbac(helm, case.name, case.namespace, *values)
            if case.cut:
                docs = case.cut.apply(docs)
            crd.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
            workdir = tmp / case.name
            workdir.mkdir()
            kubeconfig = token_kubeconfig(crd, case.namespace, case.name,
                                          workdir / "kubeconfig")  # fmt: skip
            case.operator = start_operator(kubeconfig, workdir, scope)
        up_by = time.monotonic() + 90
        for case in cases:
            assert case.operator is not None
            while not case.operator.healthy() and time.monotonic() < up_by:
                if case.operator.proc.poll() is not None:
                    break
                time.sleep(0.25)
        # After the operators started: they must notice a CRD that appears later.
        install_crd()
        for case in cases:
            case.scenario = Scenario(admin, case.namespace)
            case.scenario.start()
        _settle(cases, cases[0], deadline)
    finally:
        for case in cases:
            if case.operator:
                case.operator.stop()


def _log(case: Case) -> str:
    return case.operator.log.read_text() if case.operator else ""


def _tail(case: Case) -> str:
    """The operator's last log lines, without kopf's per-attempt retry lines (a refused
    request logs nine of them, which would hide everything else)."""
    lines = [line for line in _log(case).splitlines() if "Request attempt #" not in line]
    missing = case.scenario.missing() if case.scenario else "?"
    return f"{case.name}: missing {missing}\n" + "\n".join(lines[-30:])


def _cleanup(crd, cases: list[Case]) -> None:
    for case in cases:
        crd.kubectl("delete", "namespace", case.namespace, "--wait=false", "--ignore-not-found")
        crd.kubectl("delete", "clusterrole,clusterrolebinding", "-l",
                    f"app.kubernetes.io/instance={case.name}", "--ignore-not-found")  # fmt: skip


# --- the tests ------------------------------------------------------------------------------


def test_the_chart_rules_are_enough_for_a_cluster_wide_operator(
    crd, admin, helm, httproute_crd, tmp_path
):
    """The chart as installed by default: a ClusterRole, `--all-namespaces`."""
    case = Case("rbac-full", f"rbac-full-{os.getpid()}", None)
    _namespaces(crd, [case.namespace])
    try:
        _run(crd, admin, helm, [case], httproute_crd, tmp_path,
             namespaced=False, deadline=time.monotonic() + 120)  # fmt: skip
        assert case.finished_at is not None, _tail(case)
        print(case.scenario.when if case.scenario else None)
    finally:
        _cleanup(crd, [case])


def test_the_chart_rules_are_enough_for_a_namespaced_operator(
    crd, admin, helm, httproute_crd, tmp_path
):
    """`watchNamespaces`: a Role in the watched namespace, only CRD reads cluster-wide."""
    case = Case("rbac-ns", f"rbac-ns-{os.getpid()}", None)
    _namespaces(crd, [case.namespace])
    values = ("--set", f"watchNamespaces={{{case.namespace}}}")
    kinds = {d["kind"] for d in render_rbac(helm, case.name, case.namespace, *values)}
    assert kinds == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    try:
        _run(crd, admin, helm, [case], httproute_crd, tmp_path, namespaced=True,
             deadline=time.monotonic() + 120)  # fmt: skip
        assert case.finished_at is not None, _tail(case)
        print(case.scenario.when if case.scenario else None)
    finally:
        _cleanup(crd, [case])


def test_every_rule_is_needed(crd, admin, helm, httproute_crd, tmp_path):
    """Each cut gets an operator of its own (namespaced, so they run side by side), next to a
    control operator with every rule; the scenario must not complete for any cut."""
    probe = render_rbac(helm, "probe", "probe", "--set", "watchNamespaces={probe}")
    cuts = [c for c in cuts_of(probe)
            if (c.group, c.resource, c.verbs) not in UNPROVEN and c != NAMESPACES]  # fmt: skip
    suffix = os.getpid()
    control = Case("rbac-control", f"rbac-control-{suffix}", None)
    cases = [control] + [Case(f"rbac-{i}", f"rbac-{i}-{suffix}", cut) for i, cut in enumerate(cuts)]
    _namespaces(crd, [c.namespace for c in cases])
    try:
        started = time.monotonic()
        _run(crd, admin, helm, cases, httproute_crd, tmp_path, namespaced=True,
             deadline=time.monotonic() + 240)  # fmt: skip
        assert control.finished_at is not None, _tail(control)
        report = [f"{'rule taken away':50} scenario  still missing at the end"]
        completed = []
        for case in cases[1:]:
            assert case.cut is not None
            assert case.scenario is not None
            label = f"{case.cut.resource} ({case.cut.group or 'core'}) {'/'.join(case.cut.verbs)}"
            missing = case.scenario.missing()
            report.append(f"{label:50} {'PASSED' if not missing else 'failed':9} {missing}")
            if not missing:
                completed.append(label)
        print("\n".join(report))
        print(
            f"control completed in {control.finished_at:.1f}s; "
            f"{len(cases)} operators in {time.monotonic() - started:.0f}s"
        )
        assert not completed, f"the scenario works without these rules: {completed}"
    finally:
        _cleanup(crd, cases)


def test_a_namespaced_operator_needs_to_list_namespaces_to_start_in_time(
    crd, admin, helm, httproute_crd, tmp_path
):
    """Without `namespaces: list, watch`, kopf retries the listing for about a minute before it
    falls back to the namespaces it was given: every (re)start of the operator would stall that
    long. With them, the control's log has no refusal in it."""
    suffix = os.getpid()
    control = Case("rbac-ns-control", f"rbac-ns-control-{suffix}", None)
    cut = Case("rbac-ns-cut", f"rbac-ns-cut-{suffix}", NAMESPACES)
    _namespaces(crd, [control.namespace, cut.namespace])
    try:
        _run(crd, admin, helm, [control, cut], httproute_crd, tmp_path, namespaced=True,
             deadline=time.monotonic() + 120)  # fmt: skip
        assert control.finished_at is not None, _tail(control)
        assert "Not enough permissions" not in _log(control), _tail(control)
        assert cut.scenario is not None
        assert cut.scenario.missing(), "the scenario works without namespaces: list, watch"
    finally:
        _cleanup(crd, [control, cut])
