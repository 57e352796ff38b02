#!/usr/bin/env bash
# Install kind (pinned) into the project's cache and print its path on the last line of stdout.
#
# kind is a Go program: `go install` builds it through the Go module proxy (about a minute on
# 2 cores, once). Running a kind cluster needs Docker (or podman) and its node image
# kindest/node from Docker Hub; kind-config.yaml pins that image.
#   kind=$(hack/kind.sh | tail -n 1); "$kind" create cluster --config kind-config.yaml
set -euo pipefail

# shellcheck source=hack/kind/versions.sh
. "$(dirname "${BASH_SOURCE[0]}")/kind/versions.sh"  # KIND_VERSION

cache_root=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}
bin="$cache_root/bin"
kind="$bin/kind"

if [ -x "$kind" ] && "$kind" version 2>/dev/null | grep -q "kind $KIND_VERSION "; then
  echo "$kind"
  exit 0
fi
command -v go >/dev/null || { echo "kind: needs Go (https://go.dev/dl) to build kind" >&2; exit 1; }
mkdir -p "$bin"
echo ">> building kind $KIND_VERSION with go install (once)" >&2
GOBIN="$bin" CGO_ENABLED=0 go install "sigs.k8s.io/kind@$KIND_VERSION"
echo "$kind"
