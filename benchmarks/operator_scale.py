"""How the operator copes with many ModelDeployments at once, on the tier-1 control plane.

    .venv/bin/python benchmarks/operator_scale.py            # 100 then 1000 objects
    .venv/bin/python benchmarks/operator_scale.py --counts 50  # a quick run

Starts its own control plane (hack/cluster/localkube.py) and `modeldeploy run` as a process,
creates N ModelDeployments at once (16 client threads), and reports, next to the targets:
the time until every child exists and every status is observed, the operator's peak RSS, its
API requests per object (writes, plus reads outside watch streams, from its own metrics), and
its CPU over the idle minute that follows. Pods stay Pending (no node in tier 1), which is
what the operator sees while real pods start, without the cost of running them.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack" / "cluster"))
from kubernetes import client, config, watch  # noqa: E402

import localkube  # noqa: E402

TARGETS = {"seconds_1000": 60.0, "rss_mb": 250.0, "idle_cpu_pct": 2.0}
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def operator_requests(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(("modeldeploy_api_writes_total{", "modeldeploy_api_reads_total{"))
    )


def manifest(name: str) -> dict:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"uri": f"https://models.example/{name}.onnx", "version": "v1"},
                 "serving": {"replicas": 1}},
    }  # fmt: skip


class Progress:
    """Counts settled ModelDeployments and entry Services from watch streams.

    Watching instead of listing every second keeps the measurement off the API server: a
    list of 1,000 objects a second would cost it more CPU than the operator's own requests.
    """

    def __init__(self, ns: str) -> None:
        self.observed: set[str] = set()
        self.services: set[str] = set()
        self._watchers: list[watch.Watch] = []
        api, core = client.CustomObjectsApi(), client.CoreV1Api()
        mds = (api.list_namespaced_custom_object, "modeldeploy.io", "v1alpha1", ns,
               "modeldeployments")  # fmt: skip
        services = (core.list_namespaced_service, ns)
        self._threads = [
            threading.Thread(target=self._watch, args=(mds, {}, self._on_md), daemon=True),
            threading.Thread(target=self._watch, daemon=True, args=(
                services, {"label_selector": "app.kubernetes.io/managed-by=modeldeploy"},
                self._on_service)),
        ]  # fmt: skip
        for thread in self._threads:
            thread.start()

    def _watch(self, call: tuple[Any, ...], kwargs: dict[str, Any], on: Any) -> None:
        # One long stream (a restarted one would replay every object); the thread is a daemon.
        watcher = watch.Watch()
        self._watchers.append(watcher)
        try:
            for event in watcher.stream(*call, timeout_seconds=900, **kwargs):
                on(event["object"])
        except Exception:  # the stream ends when the batch is over
            return

    def _on_md(self, md: dict[str, Any]) -> None:
        status = md.get("status") or {}
        if status.get("observedGeneration") == md["metadata"]["generation"] and status.get(
            "stableRevision"
        ):
            self.observed.add(md["metadata"]["name"])

    def _on_service(self, service: client.V1Service) -> None:
        if "-" not in service.metadata.name:  # NAME, not NAME-stable / NAME-canary
            self.services.add(service.metadata.name)

    def stop(self) -> None:
        for watcher in self._watchers:
            watcher.stop()


def apiserver_requests(cluster: localkube.LocalCluster) -> dict[str, float]:
    """The API server's own request counters, by verb and resource (all clients)."""
    ctx = localkube.admin_context(cluster.state_dir / "pki")
    text = urllib.request.urlopen(f"{cluster.server}/metrics", context=ctx, timeout=30).read()
    counts: dict[str, float] = {}
    for line in text.decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        key = f"{labels['verb']} {labels['resource']}"
        counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def cpu_by_process(pids: dict[str, int]) -> dict[str, float]:
    return {name: proc_cpu_seconds(pid) for name, pid in pids.items()}


def run_batch(
    cluster: localkube.LocalCluster, n: int, metrics_port: int, pids: dict[str, int]
) -> dict[str, Any]:
    ns = f"scale-{n}"
    core = client.CoreV1Api()
    api = client.CustomObjectsApi()
    core.create_namespace({"metadata": {"name": ns}})
    requests_before = operator_requests(metrics_port)
    cpu_before = cpu_by_process(pids)
    apiserver_before = apiserver_requests(cluster)
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        create = api.create_namespaced_custom_object
        group = ("modeldeploy.io", "v1alpha1", ns, "modeldeployments")
        list(pool.map(lambda i: create(*group, manifest(f"m{i}")), range(n)))
    created = time.monotonic() - started
    print(f"  created {n} ModelDeployments in {created:.1f}s; waiting for the operator...",
          file=sys.stderr)  # fmt: skip
    progress, last = Progress(ns), -1
    while True:
        observed, services = len(progress.observed), len(progress.services)
        if observed != last:
            print(f"  {observed}/{n} observed, {services}/{n} entry Services "
                  f"({time.monotonic() - started:.0f}s)", file=sys.stderr)  # fmt: skip
            last = observed
        if observed == n and services == n:
            break
        if time.monotonic() - started > 600:
            raise SystemExit(f"not settled after 600s: {observed}/{n}")
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    progress.stop()
    requests = operator_requests(metrics_port) - requests_before
    cpu = {name: used - cpu_before[name] for name, used in cpu_by_process(pids).items()}
    served = {k: v - apiserver_before.get(k, 0.0) for k, v in apiserver_requests(cluster).items()}
    print("  API server requests during the batch (all clients), per object:", file=sys.stderr)
    for key, count in sorted(served.items(), key=lambda kv: -kv[1])[:15]:
        print(f"    {count / n:6.2f}  {key}", file=sys.stderr)
    return {"n": n, "seconds": elapsed, "requests_per_object": requests / n,
            "rss_mb": proc_peak_rss_mb(pids["operator"]), "cpu": cpu}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--profile", type=Path, help="record the idle period with py-spy here")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="md-scale-"))
    with localkube.LocalCluster(localkube.find_bin_dir(), state) as cluster:
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cluster.wait_established("modeldeployments.modeldeploy.io")
        config.load_kube_config(str(cluster.kubeconfig))
        client.Configuration._default.connection_pool_maxsize = 32
        metrics_port = free_port()
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
        log = (state / "operator.log").open("w")
        operator = subprocess.Popen(
            [sys.executable, "-m", "modeldeploy.cli", "run", "-A", f"--metrics-port={metrics_port}",
             f"--liveness-port={free_port()}"], env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            time.sleep(3)
            rows = []
            for n in args.counts:
                print(f"== {n} ModelDeployments", file=sys.stderr)
                pids = {"operator": operator.pid, **cluster.pids}
                rows.append(run_batch(cluster, n, metrics_port, pids))
            print("== waiting until the operator has written nothing for 10s", file=sys.stderr)
            quiet_since, last = time.monotonic(), operator_requests(metrics_port)
            while time.monotonic() - quiet_since < 10:
                time.sleep(1)
                now = operator_requests(metrics_port)
                if now != last:
                    quiet_since, last = time.monotonic(), now
            print(f"== idle for {args.idle_seconds:.0f}s", file=sys.stderr)
            cpu_before = proc_cpu_seconds(operator.pid)
            if args.profile:
                subprocess.run(["py-spy", "record", "-d", str(int(args.idle_seconds)), "-o",
                                str(args.profile), "-f", "speedscope", "-p", str(operator.pid)],
                               check=False)  # fmt: skip
            else:
                time.sleep(args.idle_seconds)
            idle_pct = 100 * (proc_cpu_seconds(operator.pid) - cpu_before) / args.idle_seconds
        finally:
            operator.terminate()
            operator.wait(timeout=30)

    def line(measure: str, figure: str, target: str = "") -> None:
        print(f"{measure:<46}{figure:>10}{target:>10}")

    line("measure", "figure", "target")
    for row in rows:
        n = int(row["n"])
        target = f"< {TARGETS['seconds_1000']:.0f}" if n == 1000 else ""
        line(f"{n} objects: seconds until applied+observed", f"{row['seconds']:.1f}", target)
        line(f"{n} objects: API requests per object", f"{row['requests_per_object']:.1f}")
        for name, seconds in sorted(row["cpu"].items(), key=lambda kv: -kv[1]):
            line(f"{n} objects: CPU seconds, {name}", f"{seconds:.1f}")
        # What the cluster's own components burned, spread over every core, is a floor no
        # operator can go below on this machine (they react to each child it creates).
        cluster_cpu = sum(s for name, s in row["cpu"].items() if name != "operator")
        line(f"{n} objects: floor from control-plane CPU (s)",
             f"{cluster_cpu / (os.cpu_count() or 1):.1f}")  # fmt: skip
    line("operator peak RSS (MB)", f"{rows[-1]['rss_mb']:.0f}", "< 250")
    line(f"idle CPU over {args.idle_seconds:.0f}s (% of one core)", f"{idle_pct:.2f}", "< 2")
    print(f"(total objects managed: {sum(int(r['n']) for r in rows)}; cluster state in {state})")


if __name__ == "__main__":
    main()
