"""Any cluster reached through a kubeconfig, and the errors of this package.

Tests talk to every cluster (a local one, kind, a node) through `Cluster`, so the same tests run
against each; the local tiers (processes.LocalTier) subclass it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


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
