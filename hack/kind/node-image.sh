#!/usr/bin/env bash
# Assemble the kind node image with no registry (`make kind-image`): `kind build node-image`
# cannot work offline (every --type downloads, and its importer needs a newer ctr than Debian's).
#
#   1. binaries: kubelet, kubectl, kube-proxy and the control plane from hack/cluster/build.sh;
#      kubeadm, crictl, CoreDNS, flannel, local-path-provisioner from hack/kind/build-bins.sh;
#   2. images the cluster runs (tags kubeadm v1.35.4 asks for, flannel, local-path), built by
#      hack/images/build.sh from those binaries and saved as tarballs in the cache;
#   3. hack/kind/node/Dockerfile: Debian bookworm with systemd, containerd, runc, CNI plugins,
#      the binaries, what kind reads (/kind/version, /kind/manifests/default-{cni,storage}.yaml),
#      the entrypoint and units;
#   4. the images imported (content only, pinned) into that image's containerd, namespace k8s.io,
#      by a containerd started in a container of it, then `docker commit`.
#
# Cached: the image carries a label with the hash of every input (files, binaries, image ids)
# and is not rebuilt while it matches. Prints the image reference on the last line of stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=hack/kind/versions.sh
. "$here/versions.sh"
cache_root=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}
docker=${DOCKER:-$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || command -v docker)}
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-1}
image=${KIND_NODE_IMAGE:-modeldeploy/kind-node:$K8S_VERSION}
preload=(pause kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns flannel local-path)

log() { printf '>> %s\n' "$*" >&2; }
timed() { local s=$SECONDS; "$@"; log "$1 ${2:-}: $((SECONDS - s))s"; }

# 1 + 2: binaries and images (each step is a no-op when cached).
k8s_bin=$(timed "$repo/hack/cluster/build.sh" etcd kube-apiserver kube-controller-manager \
  kube-scheduler kubectl kubelet kube-proxy | tail -n 1)
kind_bin=$(timed "$here/build-bins.sh" kubeadm crictl | tail -n 1)
timed "$repo/hack/images/build.sh" --no-load "${preload[@]}" >&2
images_dir="$cache_root/images"

context=$(mktemp -d)
container=
cleanup() {
  [ -z "$container" ] || "$docker" rm -f "$container" >/dev/null 2>&1 || true
  rm -rf "$context"
}
trap cleanup EXIT
cp -a "$here/node/." "$context/"
mkdir -p "$context/bin" "$context/files/kind"
cp "$k8s_bin/kubelet" "$k8s_bin/kubectl" "$context/bin/"
cp "$kind_bin/kubeadm-$K8S_VERSION" "$context/bin/kubeadm"
cp "$kind_bin/crictl-$CRICTL_VERSION" "$context/bin/crictl"
echo "$K8S_VERSION" >"$context/files/kind/version"

base_id=$("$docker" image inspect -f '{{.Id}}' modeldeploy/base:bookworm)
inputs=$( {
  (cd "$context" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  sha256sum "$0" "$here/versions.sh"
  echo "$base_id"
  for name in "${preload[@]}"; do echo "$name $(cat "$images_dir/$name.tar.id")"; done
} | sha256sum | cut -c1-16)
if [ "$("$docker" image inspect -f '{{index .Config.Labels "modeldeploy.inputs"}}' "$image" 2>/dev/null)" = "$inputs" ]; then
  log "$image is up to date (inputs $inputs)"
  echo "$image"
  exit 0
fi

start=$SECONDS
log "building the node's file system ($image, inputs $inputs)"
"$docker" build -q --network=host --build-arg BASE_IMAGE=modeldeploy/base:bookworm \
  -t "$image-build" "$context" >/dev/null
log "node file system: $((SECONDS - start))s"

# 4: a containerd of the image itself writes the preloaded images into the image's
# /var/lib/containerd. Content only (--no-unpack): the CRI plugin unpacks an image into the
# node's snapshotter the first time a container needs it, on the node's own /var volume.
start=$SECONDS
container=$("$docker" run -d --privileged --tmpfs /run --tmpfs /tmp \
  -v "$images_dir:/preload:ro" --entrypoint /usr/bin/containerd "$image-build")
for _ in $(seq 100); do
  "$docker" exec "$container" ctr version >/dev/null 2>&1 && break
  sleep 0.2
done
for name in "${preload[@]}"; do
  "$docker" exec "$container" ctr -n k8s.io images import --no-unpack --all-platforms \
    "/preload/$name.tar" >/dev/null
done
# Pinned: the kubelet's image garbage collection must never remove what cannot be pulled again.
"$docker" exec "$container" sh -c \
  'ctr -n k8s.io images ls -q | grep -v "^sha256:" | while read -r ref; do
     ctr -n k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null; done'
"$docker" exec "$container" ctr -n k8s.io images ls -q | grep -v '^sha256:' >&2
"$docker" stop -t 30 "$container" >/dev/null
# docker commit keeps the image's STOPSIGNAL and ENV; the entrypoint `run` replaced is put back.
"$docker" commit \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint"]' --change 'CMD ["/sbin/init"]' \
  --change "LABEL modeldeploy.inputs=$inputs" \
  "$container" "$image" >/dev/null
"$docker" rmi "$image-build" >/dev/null 2>&1 || true
log "preloaded ${#preload[@]} images and committed $image: $((SECONDS - start))s"
echo "$image"
