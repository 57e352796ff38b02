#!/usr/bin/env bash
# Build this project's container images with no image registry: a Debian bookworm base made by
# debootstrap (cached outside git), then each image's Dockerfile built by Debian's Docker engine on
# top of it, saved as a tarball into the cache, and imported into the local node's containerd
# (namespace k8s.io) when that node is running (hack/cluster/node/localnode.py loads the cached
# tarballs itself when it starts, so building before `up` works too).
#
#   hack/images/build.sh                  # the node's: pause coredns echo operator serving
#   hack/images/build.sh pause echo       # only these
#   hack/images/build.sh --no-load ...    # build and save, do not import into the node
#
# Every Dockerfile takes the base as `--build-arg BASE_IMAGE=...` and defaults to the public
# debian:bookworm-slim, so the same files build unchanged where a registry can be reached.
# Prints one line per image: name, reference, size, tarball.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache_root=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}
cache="$cache_root/images"
mkdir -p "$cache"
# Debian's client (20.10) speaks to Debian's engine; a newer client found first on PATH may want
# a buildx plugin that is not there.
docker=${DOCKER:-$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || command -v docker)}
# BuildKit (built into the engine since 20.10) for what Dockerfiles use today (COPY --chmod...).
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-1}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
base_ref=modeldeploy/base:$suite
rootfs_ref=modeldeploy/debootstrap:$suite
host_ca=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
tag=${MODELDEPLOY_IMAGE_TAG:-dev}
# Versions of the kind cluster's own images (hack/kind/node-image.sh preloads them).
# shellcheck source=hack/kind/versions.sh
. "$repo/hack/kind/versions.sh"

log() { printf '>> %s\n' "$*" >&2; }
die() { printf 'images: %s\n' "$*" >&2; exit 1; }

load=1
names=()
for arg in "$@"; do
  case $arg in
    --no-load) load=0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) names+=("$arg") ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=(pause coredns echo operator serving)

# name -> reference, Dockerfile, context ("repo": the repository's files as git sees them).
declare -A ref=(
  [pause]=registry.k8s.io/pause:3.10.1
  [python]=modeldeploy/python:3.11-bookworm
  [echo]=modeldeploy/echo:$tag
  [operator]=modeldeploy/operator:$tag
  [serving]=modeldeploy/serving:$tag
  [kube-apiserver]=registry.k8s.io/kube-apiserver:$K8S_VERSION
  [kube-controller-manager]=registry.k8s.io/kube-controller-manager:$K8S_VERSION
  [kube-scheduler]=registry.k8s.io/kube-scheduler:$K8S_VERSION
  [kube-proxy]=registry.k8s.io/kube-proxy:$K8S_VERSION
  [etcd]=registry.k8s.io/etcd:$ETCD_IMAGE_TAG
  [coredns]=registry.k8s.io/coredns/coredns:$COREDNS_VERSION
  [flannel]=modeldeploy/flannel:$FLANNEL_VERSION
  [local-path]=modeldeploy/local-path-provisioner:$LOCAL_PATH_VERSION
)
declare -A dockerfile=(
  [pause]=$here/pause/Dockerfile
  [python]=$here/python/Dockerfile
  [echo]=$here/echo/Dockerfile
  [operator]=$repo/operator/Dockerfile
  [serving]=$repo/serving_image/Dockerfile
  [kube-apiserver]=$here/component/Dockerfile
  [kube-controller-manager]=$here/component/Dockerfile
  [kube-scheduler]=$here/component/Dockerfile
  [etcd]=$here/component/Dockerfile
  [kube-proxy]=$here/kube-proxy/Dockerfile
  [coredns]=$here/coredns/Dockerfile
  [flannel]=$here/flannel/Dockerfile
  [local-path]=$here/local-path/Dockerfile
)

# The kind images' binaries, compiled from source into the cache: name -> "builder binary...".
declare -A binaries_of=(
  [kube-apiserver]="k8s kube-apiserver"
  [kube-controller-manager]="k8s kube-controller-manager"
  [kube-scheduler]="k8s kube-scheduler"
  [etcd]="k8s etcd"
  [kube-proxy]="k8s kube-proxy"
  [coredns]="kind coredns"
  [flannel]="kind flanneld flannel-cni"
  [local-path]="kind local-path-provisioner"
)

# Copy the binaries an image needs into the context $2, building them when not cached.
# hack/kind/build-bins.sh caches name-version; the image sees plain names (flannel-cni: flannel).
stage_binaries() {
  local name=$1 context=$2 builder dir b
  read -r builder rest <<<"${binaries_of[$name]}"
  for b in $rest; do
    if [ "$builder" = k8s ]; then
      dir=$("$repo/hack/cluster/build.sh" "$b" | tail -n 1)
      cp "$dir/$b" "$context/$b"
    else
      dir=$("$repo/hack/kind/build-bins.sh" "$b" | tail -n 1)
      cp "$dir/$b-$(version_of "$b")" "$context/${b/flannel-cni/flannel}"
    fi
  done
}

ensure_docker() {
  "$docker" version >/dev/null 2>&1 && return
  command -v dockerd >/dev/null || die "no dockerd: apt-get install docker.io"
  log "starting dockerd (log: $cache_root/dockerd.log)"
  # Builds run with --network=host, so the engine needs no bridge and adds no iptables rules:
  # nothing of it can get in the way of the node's pod network and Services.
  setsid dockerd --iptables=false --ip-forward=false --bridge=none \
    >"$cache_root/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 100); do
    "$docker" version >/dev/null 2>&1 && return
    sleep 0.2
  done
  tail -20 "$cache_root/dockerd.log" >&2
  die "dockerd did not answer within 20s"
}

# The base: `debootstrap --variant=minbase` of bookworm, trimmed the way debian:*-slim is
# (no docs, man pages or apt lists, and dpkg told to keep it so), imported as $rootfs_ref, plus
# the host's CA bundle: $base_ref.
ensure_base() {
  "$docker" image inspect "$base_ref" >/dev/null 2>&1 && return
  [ -s "$host_ca" ] || die "no $host_ca: apt-get install ca-certificates"
  local tarball="$cache/base-$suite-minbase.tar.gz"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || die "no debootstrap: apt-get install debootstrap"
    local root
    root=$(mktemp -d "$cache/rootfs.XXXXXX")
    log "debootstrap --variant=minbase $suite from $mirror"
    local start=$SECONDS
    debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
      || { tail -20 "$cache/debootstrap.log" >&2; die "debootstrap failed"; }
    cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
EOF
    cat >"$root/etc/dpkg/dpkg.cfg.d/modeldeploy-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
    cat >"$root/etc/apt/apt.conf.d/modeldeploy-slim" <<'EOF'
APT::Install-Recommends "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
EOF
    find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,info,lintian}/* "$root"/var/cache/apt/* \
      "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/* "$root"/dev/*
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    : >"$root/etc/machine-id"
    tar --numeric-owner --xattrs -C "$root" -czf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
    log "base rootfs cached in $tarball ($((SECONDS - start))s)"
  fi
  "$docker" import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' \
    "$tarball" "$rootfs_ref" >/dev/null
  # Builds must trust what this machine trusts: where TLS to PyPI goes through an intercepting
  # proxy, its CA is only in the host's bundle. So the base carries the host's bundle, and pip,
  # requests and OpenSSL are pointed at it (Debian's minbase has no CA certificates at all),
  # and the host's local CAs, which Debian's ca-certificates adds back to the bundle whenever an
  # image installs it.
  local context
  context=$(mktemp -d)
  mkdir "$context/local"
  cp "$host_ca" "$context/ca-certificates.crt"
  cp /usr/local/share/ca-certificates/*.crt "$context/local/" 2>/dev/null || true
  cat >"$context/Dockerfile" <<EOF
FROM $rootfs_ref
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY local/ /usr/local/share/ca-certificates/
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
EOF
  "$docker" build -q -t "$base_ref" "$context" >/dev/null
  rm -rf "$context"
  log "made $base_ref"
}

# The build context for a Dockerfile of the repository, written to the tarball $2: the
# repository's files as git sees them (tracked, and untracked unless ignored), so .venv, .cache
# and the like never travel to the engine. Prints the Dockerfile's path in the context.
#
# A `# syntax=docker/dockerfile:1` line asks BuildKit to pull that frontend from Docker Hub,
# which cannot be reached here: the context then gets a copy of the Dockerfile without it,
# which the engine's built-in frontend (the same language) builds.
repo_context() {
  local file=$1 tarball=$2
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
    | xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
    | tar --null -T - -cf "$tarball")
  if grep -q '^# *syntax=' "$file"; then
    local dir
    dir=$(mktemp -d)
    sed '/^# *syntax=/d' "$file" >"$dir/.Dockerfile.local"
    tar -C "$dir" -rf "$tarball" .Dockerfile.local
    rm -rf "$dir"
    echo .Dockerfile.local
  else
    echo "${file#"$repo"/}"
  fi
}

# Images whose base must bring a Python (like python:3.11-slim-bookworm) get the python image.
declare -A base_of=([serving]=python)

build_one() {
  local name=$1 context
  local file=${dockerfile[$name]}
  [ -f "$file" ] || die "$name: no $file"
  local base=$base_ref
  if [ -n "${base_of[$name]:-}" ]; then
    build_one "${base_of[$name]}"
    base=${ref[${base_of[$name]}]}
  fi
  local args=(build --network=host --build-arg "BASE_IMAGE=$base" -t "${ref[$name]}" -q)
  local start=$SECONDS
  log "building $name (${ref[$name]}) from ${file#"$repo"/}"
  case $name in
    pause)
      context=$(mktemp -d)
      local src
      src=$(cd "$repo/hack/cluster/k8s" && go mod download -json k8s.io/kubernetes \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
      [ -f "$src/build/pause/linux/pause.c" ] || die "no pause.c in the k8s.io/kubernetes module ($src)"
      cp "$src/build/pause/linux/pause.c" "$file" "$context/"
      "$docker" "${args[@]}" --build-arg VERSION=v3.10.1 "$context" >/dev/null
      rm -rf "$context"
      ;;
    echo | python) "$docker" "${args[@]}" "$(dirname "$file")" >/dev/null ;;
    kube-* | etcd | coredns | flannel | local-path)
      context=$(mktemp -d)
      cp "$file" "$context/Dockerfile"
      stage_binaries "$name" "$context"
      "$docker" "${args[@]}" --build-arg "BINARY=$name" "$context" >/dev/null
      rm -rf "$context"
      ;;
    *)
      context=$(mktemp "$cache/context.XXXXXX.tar")
      local df
      df=$(repo_context "$file" "$context")
      "$docker" "${args[@]}" -f "$df" - <"$context" >/dev/null
      rm -f "$context"
      ;;
  esac
  log "built $name in $((SECONDS - start))s"
}

# Save the image as a tarball for containerd, unless the cached one is of the same image id.
save_one() {
  local name=$1 id tarball="$cache/$1.tar"
  id=$("$docker" image inspect -f '{{.Id}}' "${ref[$name]}")
  if [ ! -s "$tarball" ] || [ "$(cat "$tarball.id" 2>/dev/null)" != "$id" ]; then
    "$docker" save -o "$tarball.tmp" "${ref[$name]}"
    mv "$tarball.tmp" "$tarball"
    echo "$id" >"$tarball.id"
  fi
  local size
  size=$("$docker" image inspect -f '{{.Size}}' "${ref[$name]}")
  printf '%-9s %-34s %9s  %s\n' "$name" "${ref[$name]}" \
    "$(numfmt --to=si --suffix=B "$size")" "$tarball"
}

ensure_docker
ensure_base
for name in "${names[@]}"; do
  [ -n "${ref[$name]:-}" ] || die "unknown image '$name' (known: ${!ref[*]})"
  build_one "$name"
  save_one "$name"
done
if [ $load -eq 1 ]; then
  python3 "$repo/hack/cluster/node/localnode.py" load-images --if-running "${names[@]}"
fi
