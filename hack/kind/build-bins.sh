#!/usr/bin/env bash
# Build, through the Go module proxy, the programs a kind node image needs beyond the Kubernetes
# binaries hack/cluster/build.sh already makes (and kind itself, which hack/kind.sh builds):
# kubeadm, crictl, CoreDNS, flannel and its CNI plugin (kindnetd, kind's own CNI, is not served
# by the proxy) and local-path-provisioner.
#
# One binary at a time (the CI machine has 2 shared cores); each lands in
# ~/.cache/modeldeploy/kind/bin/<name>-<version> and is skipped when already there, so a warm run
# is a no-op. Prints the bin directory on the last line of stdout.
#
#   hack/kind/build-bins.sh              # all of them
#   hack/kind/build-bins.sh coredns      # some
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=hack/kind/versions.sh
. "$here/versions.sh"
cache_root=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}
bin="$cache_root/kind/bin"
mkdir -p "$bin"

# name -> the main package at its version, for `go install`.
declare -A src=(
  [crictl]="sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  [coredns]="github.com/coredns/coredns@$COREDNS_VERSION"
  [flannel-cni]="github.com/containernetworking/plugins/plugins/meta/flannel@$FLANNEL_CNI_VERSION"
  [local-path-provisioner]="github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION"
)
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(kubeadm crictl coredns flanneld flannel-cni local-path-provisioner)

# kubeadm comes from the same pinned k8s.io/kubernetes module as the other Kubernetes binaries,
# with the same version stamps (kubeadm picks its image tags from its own version). A private
# copy of go.mod/go.sum (-modfile) lets `go build` add the sums kubeadm needs without touching
# hack/cluster/k8s.
build_kubeadm() {
  local out=$1 mod="$repo/hack/cluster/k8s" tmp
  tmp=$(mktemp -d "$cache_root/kind/modfile.XXXXXX")
  cp "$mod/go.mod" "$mod/go.sum" "$tmp/"
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local ldflags="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -modfile "$tmp/go.mod" -trimpath \
    -ldflags "$ldflags" -o "$out" k8s.io/kubernetes/cmd/kubeadm)
  rm -rf "$tmp"
}

for name in "${wanted[@]}"; do
  v=$(version_of "$name") || { echo "build-bins: unknown '$name'" >&2; exit 2; }
  out="$bin/$name-$v"
  [ -x "$out" ] && continue
  echo ">> building $name $v" >&2
  start=$SECONDS
  if [ "$name" = kubeadm ]; then
    build_kubeadm "$out.tmp"
  elif [ "$name" = flanneld ]; then
    # From hack/kind/flannel's module (one dependency replaced, see its go.mod). With cgo, as
    # upstream builds it: its udp backend's proxy is C (Debian bookworm's glibc, as the image).
    (cd "$here/flannel" && CGO_ENABLED=1 GOFLAGS=-mod=readonly go build -trimpath \
      -ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL_VERSION" \
      -o "$out.tmp" github.com/flannel-io/flannel)
  else
    gobin=$(mktemp -d "$cache_root/kind/gobin.XXXXXX")
    GOBIN=$gobin CGO_ENABLED=0 GOFLAGS= go install -trimpath -ldflags "-s -w" "${src[$name]}"
    mv "$gobin"/* "$out.tmp"
    rm -rf "$gobin"
  fi
  mv "$out.tmp" "$out"
  echo ">> built $name in $((SECONDS - start))s" >&2
done
echo "$bin"
