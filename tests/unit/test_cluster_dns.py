"""The real node's cluster DNS (hack/cluster/localcluster/cluster_dns.py) agrees with the node:
pods are told the address the kube-dns Service holds, inside the control plane's Service range,
and the image it runs is one the node imports from the cache."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

CLUSTER_DIR = Path(__file__).resolve().parents[2] / "hack" / "cluster"
sys.path.insert(0, str(CLUSTER_DIR))
from localcluster import cluster_dns, control_plane, host  # noqa: E402
from localcluster.node_config import NodeFiles  # noqa: E402


def test_pods_are_told_the_address_of_the_kube_dns_service(tmp_path: Path) -> None:
    kubelet = NodeFiles(tmp_path).kubelet_configuration(tmp_path / "pki")
    service = next(o for o in cluster_dns.objects() if o["kind"] == "Service")
    assert service["metadata"] == {
        "name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"},
    }  # fmt: skip
    assert kubelet["clusterDNS"] == [service["spec"]["clusterIP"]]
    assert kubelet["clusterDomain"] == "cluster.local"
    address = ipaddress.ip_address(service["spec"]["clusterIP"])
    assert address in ipaddress.ip_network(control_plane.SERVICE_CIDR)


def test_coredns_runs_an_image_the_node_imports_and_serves_the_cluster_domain() -> None:
    deployment = next(o for o in cluster_dns.objects() if o["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == host.IMAGE_REFS["coredns"]
    assert container["imagePullPolicy"] == "Never"
    corefile = next(o for o in cluster_dns.objects() if o["kind"] == "ConfigMap")["data"]
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in corefile["Corefile"]
