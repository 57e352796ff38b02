#!/usr/bin/env bash
# `make demo`: the README's main command, on this machine, from nothing to a promoted canary.
#
# 1. a real node (control plane + kubelet, built from source) unless KUBECONFIG points at a
#    cluster you chose (DEMO_KUBECONFIG=... make demo, e.g. a kind cluster with the images loaded);
# 2. the operator installed with the Helm chart;
# 3. the iris example served, then its next version rolled out as a canary under real traffic,
#    with the weight, checks and outcome shown as they happen;
# 4. how to call the model.
# `make down` removes everything.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
NS=${DEMO_NAMESPACE:-demo}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ -n "${DEMO_KUBECONFIG:-}" ]; then
  export KUBECONFIG=$DEMO_KUBECONFIG
else
  say "a real node on this machine (control plane, containerd, kubelet, kube-proxy)"
  "$PY" hack/cluster/node/localnode.py up
  export KUBECONFIG=$PWD/.cache/kubeconfig
fi
kubectl=$(hack/cluster/build.sh | tail -n 1)/kubectl
helm=$(hack/helm.sh | tail -n 1)
k() { "$kubectl" "$@"; }

say "the operator, from the Helm chart"
"$helm" upgrade --install modeldeploy charts/modeldeploy --namespace modeldeploy-system \
  --create-namespace --wait --timeout 5m --force-conflicts \
  --set operator.resyncSeconds=5
k -n modeldeploy-system get pods

say "the iris model, version 1 (examples/canary.yaml, faster steps for the demo)"
k create namespace "$NS" --dry-run=client -o yaml | k apply -f - >/dev/null
manifest() {  # $1 version: the sample models baked into the serving image
  sed -e "s|iris-v1.onnx|iris-$1.onnx|" -e "s|version: v1|version: $1|" \
      -e 's|pause: 1m|pause: 20s|' -e 's|pause: 2m|pause: 20s|' -e 's|interval: 30s|interval: 10s|' \
      -e 's|minRequests: 100|minRequests: 20|' examples/canary.yaml
}
manifest v1 | k -n "$NS" apply -f -
k -n "$NS" wait --for=condition=Ready md/iris --timeout=300s
k -n "$NS" get md iris
ip=$(k -n "$NS" get service iris -o jsonpath='{.spec.clusterIP}')
url="http://$ip/v2/models/iris/infer"
body='{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2],[6.0,2.9,4.5,1.5]]}]}'

say "traffic: 10 requests per second to the entry Service, in the background"
(
  end=$((SECONDS + 600))
  while [ $SECONDS -lt $end ]; do
    curl -s -o /dev/null -X POST "$url" -H 'Content-Type: application/json' -d "$body" || true
    sleep 0.1
  done
) &
load=$!
trap 'kill $load 2>/dev/null || true' EXIT

say "version 2 as a canary: 10% then 50% of traffic, checked every 10s, promoted if healthy"
manifest v2 | k -n "$NS" apply -f -
progress='import json, sys
s = json.load(sys.stdin).get("status", {})
checks = (s.get("analysis") or {}).get("checks") or [{}]
print("phase=%s weight=%s%% step=%s stable=%s canary=%s last-check=%s" % (
    s.get("phase"), s.get("canaryWeight", 0), s.get("currentStep", "-"),
    (s.get("stableRevision") or {}).get("modelVersion"),
    (s.get("canaryRevision") or {}).get("modelVersion", "-"), checks[-1].get("verdict", "-")))'
last=""
for _ in $(seq 1 150); do
  line=$(k -n "$NS" get md iris -o json | "$PY" -c "$progress")
  if [ "$line" != "$last" ]; then
    echo "$(date +%T)  $line"
    last=$line
  fi
  case $line in *phase=Healthy*stable=v2*|*phase=RolledBack*) break ;; esac
  sleep 2
done
k -n "$NS" get md iris -o wide
k -n "$NS" describe md iris | sed -n '/^Events:/,$p'

say "call the model"
cat <<TXT
From this machine (kube-proxy routes the node's own traffic to Services):
  curl -X POST $url -H 'Content-Type: application/json' \\
    -d '$body'
From anywhere kubectl reaches:
  $kubectl -n $NS port-forward service/iris 8080:80 &
  curl -X POST http://127.0.0.1:8080/v2/models/iris/infer -H 'Content-Type: application/json' -d '...'
Roll back, promote or pause:  .venv/bin/modeldeploy undo|promote|pause iris -n $NS
Watch:                        $kubectl -n $NS get md -w
Everything away:              make down
TXT
