#!/usr/bin/env bash
# The kind tier, as CI runs it after the real-node tier (.ci/run): this VM's Docker adapted
# (hack/kind/host-setup.sh), the node image assembled here (make kind-image, cached), a cluster
# from kind-config.ci.yaml (a control plane and two workers), the project's images loaded, the
# e2e suite unchanged against it, and the cluster deleted whatever happened. Prints the time of
# each step. Where others run clusters too, KIND_E2E_LOCK=/tmp/cluster.lock holds that lock
# for the e2e step.
set -euo pipefail
cd "$(dirname "$0")/../.."
export KIND_CONFIG=${KIND_CONFIG:-kind-config.ci.yaml}
start=$SECONDS
last=$SECONDS
step() {
  printf '\n== kind: %s (at %ss, previous step %ss)\n' "$*" "$((SECONDS - start))" "$((SECONDS - last))"
  last=$SECONDS
}
down() {
  local rc=$?
  step "kind-down"
  make kind-down KIND_CONFIG="$KIND_CONFIG" || true
  step "kind tier done (rc $rc) in $((SECONDS - start))s"
}
trap down EXIT

step "host setup (this VM's Docker)"
hack/kind/host-setup.sh
step "kind-image"
make kind-image
step "kind-up ($KIND_CONFIG)"
make kind-up
kubectl="$(hack/cluster/build.sh kubectl | tail -n 1)/kubectl --kubeconfig=.cache/kind.kubeconfig"
# kind waits for the control plane only; the suite needs the workers too.
$kubectl wait --for=condition=Ready nodes --all --timeout=180s
$kubectl get nodes -o wide
step "kind-load"
make kind-load
step "kind-e2e"
if [ -n "${KIND_E2E_LOCK:-}" ]; then
  flock "$KIND_E2E_LOCK" make kind-e2e
else
  make kind-e2e
fi
$kubectl get pods -A -o wide
