#!/usr/bin/env bash
# Build the upstream Kubernetes (and etcd) binaries this project tests against, from source,
# through the Go module proxy, at the versions pinned in hack/cluster/k8s/go.mod.
#
# Binaries land in a cache outside git, keyed on the pin files and the Go version, so a second
# run (or a second CI run on the same machine) is a no-op and a version bump rebuilds.
#
#   hack/cluster/build.sh                 # tier 1: etcd kube-apiserver kube-controller-manager kube-scheduler kubectl
#   hack/cluster/build.sh kubelet ...     # more binaries (tier 2 adds kubelet kube-proxy)
#
# Prints the directory holding the binaries on its last line of stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod="$here/k8s"
cache_root=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}

k8s_version=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$mod/go.mod")
[ -n "$k8s_version" ] || { echo "build.sh: cannot read the k8s.io/kubernetes pin from $mod/go.mod" >&2; exit 1; }
key=$( { cat "$mod/go.mod" "$mod/go.sum"; go env GOVERSION; } | sha256sum | cut -c1-12)
bin="$cache_root/k8s/$k8s_version-$key/bin"
mkdir -p "$bin"

declare -A pkg=(
  [etcd]=go.etcd.io/etcd/server/v3
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
  [kubelet]=k8s.io/kubernetes/cmd/kubelet
  [kube-proxy]=k8s.io/kubernetes/cmd/kube-proxy
)
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)

missing=()
for name in "${wanted[@]}"; do
  [ -n "${pkg[$name]:-}" ] || { echo "build.sh: unknown binary '$name' (known: ${!pkg[*]})" >&2; exit 2; }
  [ -x "$bin/$name" ] || missing+=("$name")
done

if [ ${#missing[@]} -gt 0 ]; then
  # The version stamp matters: kube-apiserver reports it, and kubectl compares it for skew.
  minor=${k8s_version#v1.}; minor=${minor%%.*}
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  tmp=$(mktemp -d "$bin/../build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  for name in "${missing[@]}"; do
    echo ">> building $name ($k8s_version) from ${pkg[$name]}" >&2
    start=$SECONDS
    # One binary at a time keeps peak memory low; the shared build cache makes the later ones fast.
    (cd "$mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$tmp/$name" "${pkg[$name]}")
    mv "$tmp/$name" "$bin/$name"
    echo ">> built $name in $((SECONDS - start))s" >&2
  done
fi
echo "$bin"
