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
# The suite finds the images in each Node's status, which the kubelet refreshes every 10 s or
# so: started at once, it saw none of the project's images and skipped most tests.
for _ in $(seq 120); do
  missing=$($kubectl get nodes -o json | python3 -c '
import json, sys
nodes = json.load(sys.stdin)["items"]
print(sum(not any("modeldeploy/serving:dev" in name for image in n["status"].get("images", [])
                  for name in image.get("names") or []) for n in nodes))')
  [ "$missing" = 0 ] && break
  sleep 1
done
[ "$missing" = 0 ] || { echo "kind: $missing node(s) never listed modeldeploy/serving:dev" >&2; exit 1; }
step "kind-e2e"
if [ -n "${KIND_E2E_LOCK:-}" ]; then
  flock "$KIND_E2E_LOCK" make kind-e2e
else
  make kind-e2e
fi
$kubectl get pods -A -o wide
