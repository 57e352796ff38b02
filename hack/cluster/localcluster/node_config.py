"""The node's configuration: containerd, CNI, kubelet and kube-proxy files and certificates,
all under the state dir, so several state dirs never share a file and `down` removes them with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localcluster.cluster_dns import CLUSTER_DOMAIN, DNS_IP
from localcluster.host import (
    CLUSTER_CIDR,
    CNI_BIN_DIRS,
    CNI_BRIDGE,
    CNI_NETWORK,
    CONTAINERD_SOCKET,
    CONTAINERD_STATE,
    NODE_IP,
    POD_CIDR,
    SANDBOX_IMAGE,
    containerd_root,
)
from localcluster.paths import NODE_DIR
from localcluster.pki import sign_certificate, write_kubeconfig
from localcluster.processes import free_ports, write_record

NODE_NAME = "modeldeploy"


class NodeFiles:
    """The node's configuration files, certificates and directories under the state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.containerd_config = state_dir / "containerd.toml"
        self.cni_conf_dir = state_dir / "cni" / "net.d"
        self.kubelet_root = state_dir / "kubelet"
        self.kubelet_config = state_dir / "kubelet.json"
        self.kubelet_kubeconfig = state_dir / "kubelet.kubeconfig"
        self.proxy_config = state_dir / "kube-proxy.json"
        self.proxy_kubeconfig = state_dir / "kube-proxy.kubeconfig"
        kubelet, healthz, proxy_healthz, proxy_metrics = free_ports(4)
        self.ports = {
            "kubelet": kubelet,
            "healthz": healthz,
            "proxy-healthz": proxy_healthz,
            "proxy-metrics": proxy_metrics,
        }

    def write(self, pki: Path, server: str) -> None:
        """Sign the node's certificates (once per PKI) and write every file for server."""
        sign = sign_certificate
        if not (pki / "kube-proxy.crt").exists():
            sign(pki, "kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth")
            sign(pki, "kubelet-serving", f"/CN={NODE_NAME}", "serverAuth",
                 f"IP:{NODE_IP},DNS:{NODE_NAME}")  # fmt: skip
            sign(pki, "kube-proxy", "/CN=system:kube-proxy", "clientAuth")
        write_kubeconfig(self.kubelet_kubeconfig, server, pki, "kubelet")
        write_kubeconfig(self.proxy_kubeconfig, server, pki, "kube-proxy")
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        cni_bin = next(d for d in CNI_BIN_DIRS if (d / "bridge").exists())
        self.containerd_config.write_text(
            (NODE_DIR / "containerd.toml")
            .read_text()
            .replace("@ROOT@", str(containerd_root()))
            .replace("@STATE@", str(CONTAINERD_STATE))
            .replace("@SOCKET@", str(CONTAINERD_SOCKET))
            .replace("@SANDBOX_IMAGE@", SANDBOX_IMAGE)
            .replace("@CNI_BIN_DIR@", str(cni_bin))
            .replace("@CNI_CONF_DIR@", str(self.cni_conf_dir))
        )
        conflist = {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": CNI_BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.dir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        write_record(self.cni_conf_dir / "10-modeldeploy.conflist", conflist)
        write_record(self.kubelet_config, self.kubelet_configuration(pki))
        write_record(self.proxy_config, self.proxy_configuration())

    def kubelet_configuration(self, pki: Path) -> dict[str, Any]:
        """The KubeletConfiguration: cgroupfs on this cgroup-v1 VM, TLS from pki, no image GC."""
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This VM has cgroup v1 (with a v2 hierarchy beside it); from 1.35 the kubelet
            # refuses to start there unless told otherwise.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",  # no systemd here; containerd's runc uses cgroupfs too
            "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
            "address": NODE_IP,
            "port": self.ports["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.ports["healthz"],
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": CLUSTER_DOMAIN,
            "clusterDNS": [DNS_IP],  # CoreDNS, deployed once the node is Ready
            "resolvConf": "/etc/resolv.conf",
            "podLogsDir": str(self.dir / "pod-logs"),
            "volumePluginDir": str(self.kubelet_root / "volume-plugins"),
            "failSwapOn": False,
            # Images come from `ctr import`, never from a registry: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # Other work shares this machine's disk and memory: evict only when really short.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "serializeImagePulls": False,
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
        }

    def proxy_configuration(self) -> dict[str, Any]:
        """The KubeProxyConfiguration: iptables mode, NodePorts on the node address only."""
        zero = "0s"  # conntrack settings: leave the machine's as they are
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.proxy_kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": CLUSTER_CIDR,
            "healthzBindAddress": f"127.0.0.1:{self.ports['proxy-healthz']}",
            "metricsBindAddress": f"127.0.0.1:{self.ports['proxy-metrics']}",
            "nodePortAddresses": [f"{NODE_IP}/32"],
            "iptables": {"localhostNodePorts": False, "minSyncPeriod": "0s"},
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": zero,
                "tcpCloseWaitTimeout": zero,
            },
        }
