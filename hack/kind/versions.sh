# Versions of everything in the kind node image this project assembles (hack/kind/node-image.sh).
# Sourced by the scripts under hack/kind; changing one rebuilds what depends on it.
# shellcheck shell=bash
K8S_VERSION=v1.35.4            # as hack/cluster/k8s/go.mod pins it
KIND_VERSION=v0.33.0           # hack/kind.sh builds it
CRICTL_VERSION=v1.34.0
COREDNS_VERSION=v1.13.1        # the tag kubeadm v1.35 expects
FLANNEL_VERSION=v0.28.4        # also named in node/files/kind/manifests/default-cni.yaml
# The flannel CNI plugin: github.com/flannel-io/cni-plugin is not served; containernetworking/
# plugins v0.9.1 is its last release on the proxy that still carries it (v1.0.1 does not).
FLANNEL_CNI_VERSION=v0.9.1
LOCAL_PATH_VERSION=v0.0.30     # also in default-storage.yaml; v0.0.34 is refused by the proxy
# etcd: the server hack/cluster/build.sh builds (the version k8s.io/kubernetes v1.35.4's go.mod
# pins, 3.6.5), tagged as such; kind-config.ci.yaml tells kubeadm that tag (it would ask 3.6.6-0).
ETCD_IMAGE_TAG=3.6.5-0

# The version build-bins.sh gives each binary's cache name.
version_of() {
  case $1 in
    kubeadm) echo "$K8S_VERSION" ;;
    crictl) echo "$CRICTL_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    flanneld) echo "$FLANNEL_VERSION" ;;
    flannel-cni) echo "$FLANNEL_CNI_VERSION" ;;
    local-path-provisioner) echo "$LOCAL_PATH_VERSION" ;;
    *) return 1 ;;
  esac
}
