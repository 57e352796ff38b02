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

say "status.url, called from a pod: cluster DNS resolves the entry Service's name"
status_url=$(k -n "$NS" get md iris -o jsonpath='{.status.url}')
echo "status.url: $status_url"
# A pod of the echo image (Python, loaded on every node), as any client in the cluster would.
client() {  # $1 pod name, then the Python program and its arguments
  local name=$1; shift
  k -n "$NS" delete pod "$name" --ignore-not-found --wait=true >/dev/null
  k -n "$NS" run "$name" --restart=Never --image=modeldeploy/echo:dev --image-pull-policy=Never \
    --command -- python3 -c "$@"
}
client url-check 'import sys, time, urllib.request
for attempt in range(30):
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()); break
    except OSError as err:
        print("retrying:", err, file=sys.stderr); time.sleep(1)' "$status_url" >/dev/null
k -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/url-check --timeout=90s >/dev/null \
  || true
k -n "$NS" logs url-check

say "traffic: 10 requests per second to the entry Service, from a pod, in the background"
# From a pod rather than this machine: on kind, the host cannot reach a ClusterIP.
client load 'import sys, time, urllib.request
end = time.monotonic() + 600
while time.monotonic() < end:
    req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=5).read()
    except OSError:
        pass
    time.sleep(0.1)' "$url" "$body" >/dev/null
trap 'k -n "$NS" delete pod load --ignore-not-found --wait=false >/dev/null 2>&1 || true' EXIT

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
away="make down"
[ -z "${DEMO_KUBECONFIG:-}" ] || away="make kind-down (kind), or delete namespace $NS"
cat <<TXT
From a pod, by name (cluster DNS):  $status_url
From this machine, on its own node (kube-proxy routes the node's traffic to Services):
  curl -X POST $url -H 'Content-Type: application/json' \\
    -d '$body'
From anywhere kubectl reaches:
  $kubectl -n $NS port-forward service/iris 8080:80 &
  curl -X POST http://127.0.0.1:8080/v2/models/iris/infer -H 'Content-Type: application/json' -d '...'
Roll back, promote or pause:  .venv/bin/modeldeploy undo|promote|pause iris -n $NS
Watch:                        $kubectl -n $NS get md -w
Everything away:              $away
TXT
