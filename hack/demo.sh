#!/usr/bin/env bash
# `make demo`: the README's main command.
#
# Today (before the operator, the serving image and the real node land) it shows what exists:
# a Kubernetes control plane built from source, the ModelDeployment CRD installed in it, the
# example ModelDeployments applied and listed, and a bad spec refused by the API server.
# Nothing serves inference yet; the end-to-end issue turns this into the full demo.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

"$PY" hack/cluster/localkube.py up
export KUBECONFIG=$PWD/.cache/kubeconfig
kubectl=$(hack/cluster/build.sh | tail -n 1)/kubectl

echo
echo "\$ kubectl apply --server-side -f crds/"
"$kubectl" apply --server-side -f crds/
"$kubectl" wait --for=condition=Established --timeout=60s crd/modeldeployments.modeldeploy.io >/dev/null
echo "\$ kubectl apply -f examples/"
"$kubectl" apply -f examples/
echo "\$ kubectl get md -o wide"
"$kubectl" get md -o wide
echo
echo "\$ kubectl apply (a canary whose weights go down: refused by the API server)"
sed -e 's/name: iris/name: iris-bad/' -e 's/setWeight: 50/setWeight: 5/' examples/canary.yaml \
  | "$kubectl" apply -f - || true
cat <<TXT

The control plane keeps running. Try:
  export KUBECONFIG=$KUBECONFIG
  $kubectl explain modeldeployments.spec.rollout
  $kubectl get md iris -o yaml        # defaults filled in by the API server
Stop it with: make cluster-down
(Serving the model and rolling out new versions arrive with the operator, serving image and
real-node issues; this demo grows with them.)
TXT
