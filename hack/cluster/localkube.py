#!/usr/bin/env python3
"""Tier-1 local Kubernetes: etcd, kube-apiserver, kube-controller-manager and kube-scheduler as
plain processes on 127.0.0.1, from the binaries hack/cluster/build.sh compiles.

Integration tests need the real API machinery (validation, RBAC, the controllers that turn a
Deployment into Pods) but no node, and nothing here can pull images, so kind is no option.
Every component listens on loopback at a random free port, so a test session and a developer's
`up` can run side by side, and nothing is reachable from outside the machine.

    python3 hack/cluster/localkube.py up [--state-dir DIR]   # start in the background
    python3 hack/cluster/localkube.py status [--state-dir DIR]
    python3 hack/cluster/localkube.py down [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import functools
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SH = REPO_ROOT / "hack" / "cluster" / "build.sh"
DEFAULT_STATE_DIR = REPO_ROOT / ".cache" / "cluster"
SHARED_KUBECONFIG = REPO_ROOT / ".cache" / "kubeconfig"
STATE_FILE = "state.json"

# Start order; stop runs it backwards so no component outlives what it depends on.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service: the first address of SERVICE_CIDR
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
APISERVER_SANS = (
    f"IP:127.0.0.1,IP:{SERVICE_IP},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
    "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
)
# ECDSA keys: every component accepts them, and openssl makes them in milliseconds, not seconds.
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
CA_OPTIONS = (
    "-days",
    "3650",
    "-subj",
    "/CN=modeldeploy-localkube-ca",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
)
CLIENT_SUBJECTS = {
    "admin": "/O=system:masters/CN=admin",
    "controller-manager": "/CN=system:kube-controller-manager",
    "scheduler": "/CN=system:kube-scheduler",
}
# How the API server authenticates to kubelets (logs, exec, port-forward), as kubeadm's did.
KUBELET_CLIENT = "apiserver-kubelet-client"
KUBELET_CLIENT_SUBJECT = "/O=system:masters/CN=kube-apiserver-kubelet-client"


class ClusterError(RuntimeError):
    """The control plane could not be started, or a command around it failed."""


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message carries kubectl's stderr, which is what explains it."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


class Cluster:
    """Any cluster reached through a kubeconfig: all that tests need to talk to one."""

    def __init__(self, kubeconfig: Path, kubectl_bin: Path | str = "kubectl") -> None:
        self.kubeconfig = kubeconfig
        self.kubectl_bin = kubectl_bin

    def create_namespace(self, name: str, timeout: float = 30.0) -> None:
        """Create a namespace and wait for its default ServiceAccount: pods are refused until
        the controller-manager has made it, a moment after the namespace."""
        self.kubectl("create", "namespace", name)
        deadline = time.monotonic() + timeout
        while self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode:
            if time.monotonic() > deadline:
                raise ClusterError(f"no default ServiceAccount in {name} after {timeout}s")
            time.sleep(0.2)

    def wait_established(self, crd: str, timeout: float = 60.0) -> None:
        """Wait until a CustomResourceDefinition serves its resource.

        Not `kubectl wait --for=condition=Established`: for a moment after creation the CRD's
        status.conditions is null, and kubectl 1.35 then fails at once ("accessor error")
        instead of waiting; that failed a cold CI run."""
        jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
        deadline = time.monotonic() + timeout
        while True:
            got = self.kubectl("get", "crd", crd, "-o", f"jsonpath={jsonpath}", check=False)
            if got.returncode == 0 and got.stdout.strip() == "True":
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"CRD {crd} not Established after {timeout}s: {got.stderr}")
            time.sleep(0.2)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raise KubectlError on failure when check is set."""
        cmd = [str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc


class LocalCluster(Cluster):
    """A tier-1 control plane owned by this Python process; stop() (or exit) ends all of it."""

    def __init__(
        self,
        bin_dir: Path,
        state_dir: Path,
        timeout: float = 120.0,
        *,
        advertise_address: str | None = None,
    ) -> None:
        """advertise_address: serve on this (non-loopback, local) address instead of 127.0.0.1.

        A node needs it (tier 2, hack/cluster/node/localnode.py): pods reach the API server
        through the `kubernetes` Service, whose endpoint is that address, and the API server
        reaches the kubelet (logs, exec, port-forward) with a client certificate of its own.
        """
        self.bin_dir = bin_dir.resolve()
        self.state_dir = state_dir.resolve()
        self.timeout = timeout  # per readiness wait; a loaded 2-core machine needs the slack
        self.advertise_address = advertise_address
        super().__init__(self.state_dir / "admin.kubeconfig", self.bin_dir / "kubectl")
        self.server = ""
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pids(self) -> dict[str, int]:
        """Process ids (each one also its process group's id) of the running components."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def start(self) -> None:
        """Start all components and wait until they work; on any failure stop what started."""
        if self._procs:
            raise ClusterError("already started")
        missing = [n for n in (*COMPONENTS, "kubectl") if not (self.bin_dir / n).is_file()]
        if missing:
            raise ClusterError(f"{self.bin_dir} lacks {', '.join(missing)}; run {BUILD_SH}")
        if running := running_components(self.state_dir):
            raise ClusterError(f"{self.state_dir} is in use by running {', '.join(running)}")
        _RUNNING.add(self)
        _stop_all_on_sigterm()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every component, newest first: SIGTERM its group, SIGKILL it if it lingers."""
        _RUNNING.discard(self)
        if not self._procs:
            return
        for proc in reversed(self._procs.values()):
            stop_group(proc.pid, functools.partial(_exited, proc))
        self._procs.clear()
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)

    def detach(self) -> None:
        """Leave the components running past this process's exit (for `up`); `down` ends them."""
        _RUNNING.discard(self)
        self._procs.clear()

    def _start(self) -> None:
        pki = self.state_dir / "pki"
        host = self.advertise_address or "127.0.0.1"
        with _step("writing certificates and kubeconfigs"):
            make_pki(pki, f"IP:{host}" if self.advertise_address else "")
            if self.advertise_address and not (pki / f"{KUBELET_CLIENT}.crt").exists():
                sign_certificate(pki, KUBELET_CLIENT, KUBELET_CLIENT_SUBJECT, "clientAuth")
            etcd_port, peer_port, api_port, kcm_port, sched_port = free_ports(5)
            self.server = f"https://{host}:{api_port}"
            for user in CLIENT_SUBJECTS:
                write_kubeconfig(self.state_dir / f"{user}.kubeconfig", self.server, pki, user)
        etcd = f"http://127.0.0.1:{etcd_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        self._launch(
            "etcd",
            lambda: _get_ok(f"{etcd}/health"),
            [
                "--name=localkube",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={etcd}",
                f"--advertise-client-urls={etcd}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=localkube={peer}",
                "--unsafe-no-fsync",  # throwaway data: durability costs seconds per test run
            ],
        )
        admin = admin_context(pki)
        if self.advertise_address:  # the lease reconciler publishes it as the Service's endpoint
            node_args = [
                f"--kubelet-client-certificate={pki / f'{KUBELET_CLIENT}.crt'}",
                f"--kubelet-client-key={pki / f'{KUBELET_CLIENT}.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP",
            ]
        else:  # a loopback address is invalid in Endpoints: the reconciler would fail forever
            node_args = ["--endpoint-reconciler-type=none"]
        self._launch(
            "kube-apiserver",
            lambda: _get_ok(f"{self.server}/readyz", admin),
            [
                f"--etcd-servers={etcd}",
                f"--bind-address={host}",
                f"--advertise-address={host}",
                f"--secure-port={api_port}",
                f"--cert-dir={self.state_dir / 'kube-apiserver'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                *node_args,
                "--profiling=false",
            ],
        )
        insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # they serve self-signed certs
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        kcm = self.state_dir / "controller-manager.kubeconfig"
        self._launch(
            "kube-controller-manager",
            lambda: _get_ok(f"https://127.0.0.1:{kcm_port}/healthz", insecure),
            [
                f"--kubeconfig={kcm}",
                f"--authentication-kubeconfig={kcm}",
                f"--authorization-kubeconfig={kcm}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                # Without the front-proxy (requestheader) CA, which nothing here needs, the lookup
                # of the apiserver's authentication ConfigMap logs errors forever.
                "--authentication-skip-lookup=true",
                f"--cert-dir={self.state_dir / 'kube-controller-manager'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--leader-elect=false",
                # Each controller's ServiceAccount and token go through a client limited to 20
                # requests/s by default: that alone would add 4s to every start.
                "--kube-api-qps=500",
                "--kube-api-burst=1000",
            ],
        )
        # kube-scheduler's --kubeconfig and --leader-elect are deprecated for a config file.
        sched = self.state_dir / "scheduler.kubeconfig"
        sched_config = self.state_dir / "scheduler.json"
        sched_config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {"kubeconfig": str(sched)},
                    "leaderElection": {"leaderElect": False},
                }
            )
        )
        self._launch(
            "kube-scheduler",
            lambda: _get_ok(f"https://127.0.0.1:{sched_port}/healthz", insecure),
            [
                f"--config={sched_config}",
                f"--authentication-kubeconfig={sched}",
                f"--authorization-kubeconfig={sched}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                # Without the front-proxy (requestheader) CA, which nothing here needs, the lookup
                # of the apiserver's authentication ConfigMap logs errors forever.
                "--authentication-skip-lookup=true",
            ],
        )
        # The default ServiceAccount is made by the controller-manager's token and
        # serviceaccount controllers: it proves they run, and Pods are refused without it.
        sa = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
        with _step("waiting for the default ServiceAccount"):
            self._wait("kube-controller-manager", lambda: _get_ok(sa, admin))

    def _launch(self, name: str, ready: Callable[[], bool], args: list[str]) -> None:
        """Start one component in its own process group, logging to a file, and await it."""
        with _step(f"starting {name}"):
            with open(self.state_dir / f"{name}.log", "wb") as log:
                self._procs[name] = subprocess.Popen(
                    [str(self.bin_dir / name), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own group: stop() can end it whole
                )
            self._save_state()  # recorded at once, so `down` finds even a half-started cluster
            self._wait(name, ready)

    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        """Poll until ready() holds; fail with the log tail if it times out or anything dies."""
        deadline = time.monotonic() + self.timeout
        while not ready():
            for other, proc in self._procs.items():
                if proc.poll() is not None:
                    raise ClusterError(
                        f"{other} exited with code {proc.returncode}" + self._log_tail(other)
                    )
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{name} not ready after {self.timeout:g}s" + self._log_tail(name)
                )
            time.sleep(0.2)

    def _log_tail(self, name: str, lines: int = 25) -> str:
        log = self.state_dir / f"{name}.log"
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        return f"; last lines of {log}:\n" + "\n".join(tail)

    def _save_state(self) -> None:
        state = {"bin_dir": str(self.bin_dir), "server": self.server, "pids": self.pids}
        (self.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


_RUNNING: set[LocalCluster] = set()  # started by this process and not stopped (nor detached)


@atexit.register
def _stop_all() -> None:
    for cluster in list(_RUNNING):
        cluster.stop()


def _stop_all_on_sigterm() -> None:
    """Stop the clusters on SIGTERM too (a CI timeout, a plain kill), which skips atexit.

    Only where SIGTERM has its default action: a program with its own handler keeps it.
    """
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        with contextlib.suppress(ValueError):  # only the main thread may set handlers
            signal.signal(signal.SIGTERM, _stop_all_and_die)


def _stop_all_and_die(signum: int, _frame: FrameType | None) -> None:
    _stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # die of the signal, as without this handler


def find_bin_dir() -> Path:
    """The Kubernetes binaries: $MODELDEPLOY_K8S_BIN, else build.sh's (cached) output."""
    if env := os.environ.get("MODELDEPLOY_K8S_BIN"):
        return Path(env)
    out = subprocess.run([str(BUILD_SH)], stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise ClusterError(f"{BUILD_SH} failed with code {out.returncode}")
    return Path(out.stdout.strip().splitlines()[-1])


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now; all held open together so none comes back twice."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _openssl(*args: str | int | Path) -> None:
    proc = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def _sign(pki: Path, name: str, subject: str, usage: str, sans: str = "") -> None:
    """Make name.key and name.crt, signed by the CA, for a server or client (usage)."""
    key, crt, csr, ext = (pki / f"{name}.{suffix}" for suffix in ("key", "crt", "csr", "ext"))
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage={usage}\n" + (f"subjectAltName={sans}\n" if sans else "")
    )
    _openssl("req", "-new", *EC_KEY, "-keyout", key, "-out", csr, "-subj", subject)
    ca = ("-CA", pki / "ca.crt", "-CAkey", pki / "ca.key", "-set_serial", secrets.randbits(63))
    _openssl("x509", "-req", "-in", csr, *ca, "-days", 3650, "-extfile", ext, "-out", crt)
    csr.unlink()
    ext.unlink()


def sign_certificate(pki: Path, name: str, subject: str, usage: str, sans: str = "") -> None:
    """Make name.key and name.crt in pki, signed by its CA: usage serverAuth or clientAuth."""
    _sign(pki, name, subject, usage, sans)


def make_pki(pki: Path, extra_sans: str = "") -> None:
    """Create the CA, serving and client certificates and the service-account key, once.

    Kept across restarts of the same state dir: etcd's data (service-account tokens, the
    kube-root-ca.crt ConfigMaps) was made with these keys. extra_sans (`IP:...,DNS:...`) are
    added to the API server's certificate.
    """
    if (pki / "sa.pub").exists():  # written last
        return
    pki.mkdir(mode=0o700, parents=True, exist_ok=True)
    key, crt = pki / "ca.key", pki / "ca.crt"
    _openssl("req", "-x509", "-new", *EC_KEY, "-keyout", key, "-out", crt, *CA_OPTIONS)
    sans = f"{APISERVER_SANS},{extra_sans}" if extra_sans else APISERVER_SANS
    _sign(pki, "apiserver", "/CN=kube-apiserver", "serverAuth", sans)
    for name, subject in CLIENT_SUBJECTS.items():
        _sign(pki, name, subject, "clientAuth")
    # Service-account tokens are signed with RSA, as in every kubeadm cluster.
    sa_key = pki / "sa.key"
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", sa_key)
    _openssl("pkey", "-in", sa_key, "-pubout", "-out", pki / "sa.pub")


def write_kubeconfig(path: Path, server: str, pki: Path, cert: str) -> None:
    """Write a kubeconfig with the CA and client cert embedded, so a copy works anywhere."""

    def data(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "localkube",
                "cluster": {"server": server, "certificate-authority-data": data("ca.crt")},
            }
        ],
        "users": [
            {
                "name": cert,
                "user": {
                    "client-certificate-data": data(f"{cert}.crt"),
                    "client-key-data": data(f"{cert}.key"),
                },
            }
        ],
        "contexts": [{"name": "localkube", "context": {"cluster": "localkube", "user": cert}}],
        "current-context": "localkube",
    }
    path.touch(mode=0o600)
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is valid kubeconfig YAML


def admin_context(pki: Path) -> ssl.SSLContext:
    """TLS context that trusts the cluster CA and authenticates as admin (system:masters)."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    return ctx


def _get_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            return int(resp.status) == 200
    except (OSError, http.client.HTTPException):  # refused, not ready (HTTPError), TLS
        return False


@contextlib.contextmanager
def _step(what: str) -> Iterator[None]:
    """Report a step and its duration on stderr: `starting etcd... ok (0.8s)`."""
    print(f"{what}... ", end="", file=sys.stderr, flush=True)
    began = time.monotonic()
    try:
        yield
    except BaseException:
        print("failed", file=sys.stderr, flush=True)
        raise
    print(f"ok ({time.monotonic() - began:.1f}s)", file=sys.stderr, flush=True)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None  # poll() also reaps it


def _wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop_group(pgid: int, gone: Callable[[], bool], timeout: float = 15.0) -> None:
    """SIGTERM a process group, SIGKILL it if its leader outlives timeout; idempotent."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
        if not _wait_until(gone, timeout):
            os.killpg(pgid, signal.SIGKILL)
            _wait_until(gone, 5.0)
        os.killpg(pgid, signal.SIGKILL)  # whatever the leader left behind in its group


def is_running(pid: int, exe: Path) -> bool:
    """Whether pid is a live process of exe: a recycled pid is never mistaken for ours."""
    try:  # a zombie's cmdline is empty, so it does not count as running
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return os.fsdecode(argv0) == str(exe)


def _not_running(pid: int, exe: Path) -> bool:
    return not is_running(pid, exe)


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """What the last start recorded in state_dir (binaries, server, pids), if anything."""
    try:
        state: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    return state


def running_components(state_dir: Path) -> list[str]:
    """Names of the components recorded in state_dir whose processes still run."""
    state = read_state(state_dir) or {"pids": {}}
    return [
        name
        for name, pid in state["pids"].items()
        if is_running(pid, Path(state["bin_dir"]) / name)
    ]


def stop_recorded(state_dir: Path) -> None:
    """Stop the processes recorded in state_dir, e.g. those a finished `up` left running."""
    state = read_state(state_dir)
    if state is None:
        return
    for name in reversed(running_components(state_dir)):
        exe = Path(state["bin_dir"]) / name
        pid = int(state["pids"][name])
        stop_group(pid, functools.partial(_not_running, pid, exe))
    (state_dir / STATE_FILE).unlink()


def _up(state_dir: Path) -> int:
    running = running_components(state_dir)
    if len(running) == len(COMPONENTS):
        print(f"localkube: already up ({state_dir})", file=sys.stderr)
    else:
        stop_recorded(state_dir)  # the remains of a half-dead cluster
        cluster = LocalCluster(find_bin_dir(), state_dir)
        cluster.start()
        cluster.detach()
        SHARED_KUBECONFIG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cluster.kubeconfig, SHARED_KUBECONFIG)
        print(f"localkube: up at {cluster.server}; `down` stops it", file=sys.stderr)
    print(f"export KUBECONFIG={state_dir / 'admin.kubeconfig'}")
    return 0


def _down(state_dir: Path) -> int:
    if read_state(state_dir) is None:
        print(f"localkube: nothing running from {state_dir}", file=sys.stderr)
        return 0
    stop_recorded(state_dir)
    print("localkube: stopped", file=sys.stderr)
    return 0


def _status(state_dir: Path) -> int:
    state = read_state(state_dir)
    if state is None:
        print(f"down (no cluster recorded in {state_dir})")
        return 1
    running = running_components(state_dir)
    for name in COMPONENTS:
        pid = state["pids"].get(name)
        print(f"{name:24} {'running' if name in running else 'stopped':8} pid {pid}")
    ready = _get_ok(f"{state['server']}/readyz", admin_context(state_dir / "pki"))
    print(f"{'apiserver /readyz':24} {'ok' if ready else 'failing'}  {state['server']}")
    print(f"export KUBECONFIG={state_dir / 'admin.kubeconfig'}")
    return 0 if ready and len(running) == len(COMPONENTS) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local tier-1 Kubernetes control plane.")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="certificates, etcd data, logs and pids (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    commands = {"up": _up, "down": _down, "status": _status}
    try:
        return commands[args.command](args.state_dir.resolve())
    except ClusterError as err:
        print(f"localkube: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
