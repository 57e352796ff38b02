"""Tier 1: etcd, kube-apiserver, kube-controller-manager and kube-scheduler as plain processes
on 127.0.0.1, from the binaries hack/cluster/build.sh compiles.

Integration tests need the real API machinery (validation, RBAC, the controllers that turn a
Deployment into Pods) but no node, and nothing here can pull images, so kind is no option.
Every component listens on loopback at a random free port, so a test session and a developer's
`up` can run side by side, and nothing is reachable from outside the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from localcluster import processes
from localcluster.cluster import ClusterError
from localcluster.paths import BUILD_SH, REPO_ROOT, find_bin_dir, share_kubeconfig
from localcluster.pki import (
    admin_context,
    make_pki,
    sign_certificate,
    unverified_context,
    write_kubeconfig,
)
from localcluster.processes import LocalTier, get_ok, step

DEFAULT_STATE_DIR = REPO_ROOT / ".cache" / "cluster"
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
CLIENT_SUBJECTS = {
    "admin": "/O=system:masters/CN=admin",
    "controller-manager": "/CN=system:kube-controller-manager",
    "scheduler": "/CN=system:kube-scheduler",
}
# How the API server authenticates to kubelets (logs, exec, port-forward), as kubeadm's did.
KUBELET_CLIENT = "apiserver-kubelet-client"
KUBELET_CLIENT_SUBJECT = "/O=system:masters/CN=kube-apiserver-kubelet-client"


class LocalCluster(LocalTier):
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

        A node needs it (tier 2, localcluster.node): pods reach the API server through the
        `kubernetes` Service, whose endpoint is that address, and the API server reaches the
        kubelet (logs, exec, port-forward) with a client certificate of its own.
        """
        self.bin_dir = bin_dir.resolve()
        self.state_dir = state_dir.resolve()
        self.timeout = timeout  # per readiness wait; a loaded 2-core machine needs the slack
        self.advertise_address = advertise_address
        super().__init__(self.state_dir / "admin.kubeconfig", self.bin_dir / "kubectl")
        self.server = ""
        self._components = processes.Components(self.state_dir, timeout, self._save_state)

    @property
    def pids(self) -> dict[str, int]:
        """Process ids (each one also its process group's id) of the running components."""
        return self._components.pids

    def _check_can_start(self) -> None:
        if self._components.pids:
            raise ClusterError("already started")
        missing = [n for n in (*COMPONENTS, "kubectl") if not (self.bin_dir / n).is_file()]
        if missing:
            raise ClusterError(f"{self.bin_dir} lacks {', '.join(missing)}; run {BUILD_SH}")
        if running := running_components(self.state_dir):
            raise ClusterError(f"{self.state_dir} is in use by running {', '.join(running)}")

    def _stop(self) -> None:
        """Stop every component, newest first: SIGTERM its group, SIGKILL it if it lingers."""
        if not self._components.pids:
            return
        self._components.stop()
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)

    def _detach(self) -> None:
        self._components.forget()

    def _start(self) -> None:
        pki = self.state_dir / "pki"
        host = self.advertise_address or "127.0.0.1"
        with step("writing certificates and kubeconfigs"):
            sans = f"{APISERVER_SANS},IP:{host}" if self.advertise_address else APISERVER_SANS
            make_pki(pki, sans, CLIENT_SUBJECTS)
            if self.advertise_address and not (pki / f"{KUBELET_CLIENT}.crt").exists():
                sign_certificate(pki, KUBELET_CLIENT, KUBELET_CLIENT_SUBJECT, "clientAuth")
            etcd_port, peer_port, api_port, kcm_port, sched_port = processes.free_ports(5)
            self.server = f"https://{host}:{api_port}"
            for user in CLIENT_SUBJECTS:
                write_kubeconfig(self.state_dir / f"{user}.kubeconfig", self.server, pki, user)
        etcd = f"http://127.0.0.1:{etcd_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        self._launch(
            "etcd",
            lambda: get_ok(f"{etcd}/health"),
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
            lambda: get_ok(f"{self.server}/readyz", admin),
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
        insecure = unverified_context()  # they serve self-signed certs
        kcm = self.state_dir / "controller-manager.kubeconfig"
        self._launch(
            "kube-controller-manager",
            lambda: get_ok(f"https://127.0.0.1:{kcm_port}/healthz", insecure),
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
            lambda: get_ok(f"https://127.0.0.1:{sched_port}/healthz", insecure),
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
        with step("waiting for the default ServiceAccount"):
            self._components.wait("kube-controller-manager", lambda: get_ok(sa, admin))

    def _launch(self, name: str, ready: Callable[[], bool], args: list[str]) -> None:
        self._components.launch(name, self.bin_dir / name, args, ready)

    def _save_state(self) -> None:
        state = {"bin_dir": str(self.bin_dir), "server": self.server, "pids": self.pids}
        processes.write_record(self.state_dir / STATE_FILE, state)


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """What the last start recorded in state_dir (binaries, server, pids), if anything."""
    return processes.read_record(state_dir / STATE_FILE)


def running_components(state_dir: Path) -> list[str]:
    """Names of the components recorded in state_dir whose processes still run."""
    state = read_state(state_dir) or {"pids": {}, "bin_dir": ""}
    return processes.running(state["pids"], lambda name: Path(state["bin_dir"]) / name)


def stop_recorded(state_dir: Path) -> None:
    """Stop the processes recorded in state_dir, e.g. those a finished `up` left running."""
    state = read_state(state_dir)
    if state is None:
        return
    for name in reversed(running_components(state_dir)):
        processes.stop_recorded(int(state["pids"][name]), Path(state["bin_dir"]) / name)
    (state_dir / STATE_FILE).unlink()


# ---- CLI ---------------------------------------------------------------------------------------


def up(state_dir: Path) -> int:
    """Start a control plane from state_dir and leave it running, unless one already runs."""
    running = running_components(state_dir)
    if len(running) == len(COMPONENTS):
        print(f"localkube: already up ({state_dir})", file=sys.stderr)
    else:
        stop_recorded(state_dir)  # the remains of a half-dead cluster
        cluster = LocalCluster(find_bin_dir(), state_dir)
        cluster.start()
        cluster.detach()
        share_kubeconfig(cluster.kubeconfig)
        print(f"localkube: up at {cluster.server}; `down` stops it", file=sys.stderr)
    print(f"export KUBECONFIG={state_dir / 'admin.kubeconfig'}")
    return 0


def down(state_dir: Path) -> int:
    """Stop the control plane recorded in state_dir."""
    if read_state(state_dir) is None:
        print(f"localkube: nothing running from {state_dir}", file=sys.stderr)
        return 0
    stop_recorded(state_dir)
    print("localkube: stopped", file=sys.stderr)
    return 0


def status(state_dir: Path) -> int:
    """Print each component's state and the API server's readiness; 0 when all is well."""
    state = read_state(state_dir)
    if state is None:
        print(f"down (no cluster recorded in {state_dir})")
        return 1
    running = running_components(state_dir)
    for name in COMPONENTS:
        pid = state["pids"].get(name)
        print(f"{name:24} {'running' if name in running else 'stopped':8} pid {pid}")
    ready = get_ok(f"{state['server']}/readyz", admin_context(state_dir / "pki"))
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
    commands = {"up": up, "down": down, "status": status}
    try:
        return commands[args.command](args.state_dir.resolve())
    except ClusterError as err:
        print(f"localkube: {err}", file=sys.stderr)
        return 1
