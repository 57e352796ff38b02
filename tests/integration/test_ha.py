"""One active operator: two `modeldeploy run` processes against the same API server, with
leader election through a Lease (runtime/leader.py), and status writes conditional on the
resourceVersion they were decided on.

Each operator process reaches the API server through a relay of its own (WireRelay, started by
the test: plain HTTP in, TLS with the admin's credentials out), which records every request
that process sent: method, path and time. So "the standby wrote nothing" is counted on the
wire, outside the process, whatever code (ours or kopf's) would have sent it, as well as in
the process's own modeldeploy_api_writes_total.

Pods never run in tier 1 (no node): the rollout's observable step is the canary revision, its
size for step 0 and status.currentStep, which the new leader must keep, not restart.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client
from kubernetes import config as kube_config
from prometheus_client import REGISTRY

from integration.operator_run import Operator, start_operator, wait_for
from integration.test_operator import apply, children, example, get, revisions
from modeldeploy.core.settings import Settings
from modeldeploy.runtime.kube import ConflictError, Kube
from modeldeploy.runtime.reconcile import reconcile

RESYNC_SECONDS = 2
LEASE = {"MODELDEPLOY_LEASE_DURATION_SECONDS": "6", "MODELDEPLOY_LEASE_RENEW_DEADLINE_SECONDS": "4",
         "MODELDEPLOY_LEASE_RETRY_PERIOD_SECONDS": "1"}  # fmt: skip
TAKEOVER_SECONDS = 30
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "content-length", "host"}  # fmt: skip


# --- a relay that records one process's requests ----------------------------------------------


@dataclass(frozen=True)
class Request:
    at: float
    """time.monotonic() when the request arrived."""
    method: str
    path: str


class WireRelay(ThreadingHTTPServer):
    """Plain HTTP on 127.0.0.1 to the API server over TLS, with the admin kubeconfig's
    credentials; every request is recorded before it is forwarded. Watches stream through
    (chunked), so kopf works through it as it does directly."""

    daemon_threads = True

    def __init__(self, kubeconfig: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        # The kubernetes client's own reading of the kubeconfig (files, data, tokens).
        upstream = client.Configuration()
        kube_config.load_kube_config(config_file=str(kubeconfig), client_configuration=upstream)
        server = urlsplit(upstream.host)
        self.upstream = (str(server.hostname), server.port or 443)
        self.context = ssl.create_default_context(cafile=upstream.ssl_ca_cert)
        if upstream.cert_file:
            self.context.load_cert_chain(upstream.cert_file, upstream.key_file)
        self.token = upstream.get_api_key_with_prefix("BearerToken") or (
            upstream.get_api_key_with_prefix("authorization")
        )
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append(Request(time.monotonic(), method, path))

    def writes(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method in WRITE_METHODS]

    def reads(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method not in WRITE_METHODS]

    def kubeconfig(self, path: Path) -> Path:
        port = self.server_address[1]
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "relay",
            "clusters": [{"name": "relay", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "relay", "user": {}}],
            "contexts": [{"name": "relay", "context": {"cluster": "relay", "user": "relay"}}],
        }))  # fmt: skip
        return path


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: WireRelay

    def log_message(self, *_: Any) -> None:
        return

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _relay(self) -> None:
        body = self._body()
        self.server.record(self.command, self.path)
        host, port = self.server.upstream
        upstream = http.client.HTTPSConnection(host, port, context=self.server.context)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if self.server.token:
            headers["Authorization"] = self.server.token
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
            self.send_response(reply.status, reply.reason)
            for key, value in reply.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            if reply.getheader("Content-Length") is not None:
                data = reply.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while data := reply.read1(65536):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException):  # either side went away (a killed process)
            self.close_connection = True
        finally:
            upstream.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay  # noqa: N815


# --- two operators ------------------------------------------------------------------------------


@dataclass
class Replica:
    operator: Operator
    relay: WireRelay

    @property
    def identity(self) -> str:
        """The default holder identity: hostname and process id."""
        return f"{socket.gethostname()}_{self.operator.proc.pid}"

    def metric(self, name: str) -> float:
        """The sum of one metric family's samples, from the process's own /metrics."""
        return sum(float(line.rsplit(" ", 1)[1]) for line in self.operator.metrics().splitlines()
                   if line.startswith((f"{name}{{", f"{name} ")))  # fmt: skip


def start_replica(crd, namespace: str, workdir: Path) -> Replica:
    workdir.mkdir()
    relay = WireRelay(Path(crd.kubeconfig))
    env = {"MODELDEPLOY_RESYNC_SECONDS": str(RESYNC_SECONDS), "TMPDIR": tempfile.gettempdir(),
           "MODELDEPLOY_LEASE_NAMESPACE": namespace, "MODELDEPLOY_LEASE_NAME": "modeldeploy",
           **LEASE}  # fmt: skip
    operator = start_operator(relay.kubeconfig(workdir / "kubeconfig"), workdir,
                              f"--namespace={namespace}", env=env)  # fmt: skip
    return Replica(operator, relay)


def stop(replica: Replica) -> None:
    replica.operator.stop()
    replica.relay.shutdown()


@pytest.fixture
def replicas(crd, namespace, tmp_path) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    try:
        started.append(start_replica(crd, namespace, tmp_path / "a"))
        wait_for(lambda: holder(crd, namespace) == started[0].identity, "a to hold the Lease",
                 started[0].operator)  # fmt: skip
        started.append(start_replica(crd, namespace, tmp_path / "b"))
        yield started
    finally:
        for replica in started:
            stop(replica)


def lease(crd, namespace: str) -> dict[str, Any]:
    found = crd.kubectl("get", "lease", "modeldeploy", "-n", namespace, "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else {}


def holder(crd, namespace: str) -> str | None:
    return (lease(crd, namespace).get("spec") or {}).get("holderIdentity")


def rollout(crd, namespace: str) -> dict[str, Any]:
    """What a user reads of the rollout's position."""
    status = get(crd, namespace, "md", "iris").get("status") or {}
    canary = (status.get("canaryRevision") or {}).get("name")
    size = get(crd, namespace, "deploy", canary)["spec"]["replicas"] if canary else None
    return {"stable": (status.get("stableRevision") or {}).get("name"), "canary": canary,
            "step": status.get("currentStep"), "weight": status.get("canaryWeight"),
            "canary replicas": size}  # fmt: skip


# --- the tests ----------------------------------------------------------------------------------


def test_only_the_leader_writes_and_the_standby_takes_over_mid_rollout(crd, namespace, replicas):
    active, standby = replicas
    apply(crd, namespace, example())
    wait_for(lambda: len(revisions(crd, namespace, "iris")) == 1
             and rollout(crd, namespace)["stable"], "the first revision, stable in status",
             active.operator)  # fmt: skip
    doc = example()
    doc["spec"]["model"]["uri"] = "https://models.example/iris-v2.onnx"
    apply(crd, namespace, doc)
    wait_for(lambda: (r := rollout(crd, namespace))["canary"] and r["canary replicas"] == 1,
             "a canary at its first step's size", active.operator)  # fmt: skip
    time.sleep(3 * RESYNC_SECONDS)  # resyncs and timed checks fall due on both replicas
    before = rollout(crd, namespace)
    # Step 0, sized for 10 %; its traffic share is 0 while no canary pod is ready (no node).
    assert (before["step"], before["weight"], before["canary replicas"]) == (0, 0, 1)

    # The standby: connected and watching (reads on its wire), yet not one write, by either
    # count; the leader's writes are on its wire and in its metrics.
    assert len(standby.relay.reads()) > 0
    assert standby.relay.writes() == []
    assert standby.metric("modeldeploy_api_writes_total") == 0
    assert standby.metric("modeldeploy_lease_writes_total") == 0
    assert standby.metric("modeldeploy_leader") == 0
    assert active.metric("modeldeploy_leader") == 1
    assert active.metric("modeldeploy_api_writes_total") > 0
    leader_writes = {(r.method, r.path.split("?")[0]) for r in active.relay.writes()}
    status_path = (
        f"/apis/modeldeploy.io/v1alpha1/namespaces/{namespace}/modeldeployments/iris/status"
    )
    assert ("PATCH", status_path) in leader_writes
    assert holder(crd, namespace) == active.identity

    # The leader dies mid-rollout, without handing the Lease back; meanwhile a child is deleted
    # and a new ModelDeployment is applied, which only a leader would act on.
    killed_at = time.monotonic()
    active.operator.proc.send_signal(signal.SIGKILL)
    active.operator.proc.wait()
    crd.kubectl("delete", "service", "iris-canary", "-n", namespace)
    apply(crd, namespace, example("late"))

    def took_over() -> bool:
        late = get(crd, namespace, "md", "late").get("status") or {}
        return (("Service", "iris-canary") in children(crd, namespace, "iris")
                and len(children(crd, namespace, "late")) == 3
                and late.get("observedGeneration") == 1)  # fmt: skip

    wait_for(took_over, "the standby to take over", standby.operator, timeout=TAKEOVER_SECONDS)
    took = time.monotonic() - killed_at
    print(f"took over {took:.1f}s after the leader was killed")
    assert took < TAKEOVER_SECONDS
    assert holder(crd, namespace) == standby.identity
    assert lease(crd, namespace)["spec"]["leaseTransitions"] >= 1
    # The rollout continues at the same step: same revisions, same step, same canary size.
    time.sleep(2 * RESYNC_SECONDS)
    assert rollout(crd, namespace) == before
    # Every write of the new leader came after the old one died.
    first = min(r.at for r in standby.relay.writes())
    assert first > killed_at
    assert standby.metric("modeldeploy_api_writes_total") > 0
    assert standby.metric("modeldeploy_leader") == 1


def test_a_stale_status_write_is_refused_and_decided_again_not_reported(crd, namespace):
    """The reconcile shell itself, in this process, on the real API server: a decision made on
    an old read of the object loses to the newer object (409), says nothing to the user, and
    asks to run again at once; the next decision, on the fresh read, is written."""
    kube = Kube(kube_config.new_client_from_config(str(crd.kubeconfig)))
    apply(crd, namespace, example())
    stale = get(crd, namespace, "md", "iris")
    settings = Settings(resync_seconds=RESYNC_SECONDS)
    version = stale["metadata"]["resourceVersion"]
    first = reconcile(kube.for_version(version), stale, [], settings, datetime.now(UTC))
    assert first.failed == 0
    assert first.writes > 0  # children created, status written
    fresh = get(crd, namespace, "md", "iris")
    assert fresh["metadata"]["resourceVersion"] != version

    # The server refuses a status patch conditional on the old version.
    with pytest.raises(ConflictError) as refused:
        kube.for_version(version).patch_status(namespace, "iris", {"phase": "Failed"})
    assert refused.value.status == 409

    # A reconcile decided on the stale read: its status write conflicts.
    conflicts = REGISTRY.get_sample_value("modeldeploy_status_conflicts_total") or 0.0
    now = datetime.now(UTC)
    again = reconcile(kube.for_version(version), stale, [], settings, now)
    assert again.failed == 0  # not a failure: no backoff
    assert again.events == []  # nothing told the user about a decision that was dropped
    assert again.wake_at == now  # decide again on the next tick
    assert REGISTRY.get_sample_value("modeldeploy_status_conflicts_total") == conflicts + 1
    after = get(crd, namespace, "md", "iris")
    assert after["metadata"]["resourceVersion"] == fresh["metadata"]["resourceVersion"]
    conditions = {c["type"]: c for c in after["status"]["conditions"]}
    assert conditions["Degraded"]["status"] == "False"
    assert "StatusRejected" not in json.dumps(after["status"])

    # Decided again on the fresh read: accepted.
    listed = list(children(crd, namespace, "iris").values())
    redo = reconcile(kube.for_version(fresh["metadata"]["resourceVersion"]), fresh, listed,
                     settings, datetime.now(UTC))  # fmt: skip
    assert redo.failed == 0
