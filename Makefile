# modeldeploy: the commands a developer and CI run. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CRD := crds/modeldeployments.modeldeploy.io.yaml
CHART_CRD := charts/modeldeploy/crds/modeldeployments.modeldeploy.io.yaml

.PHONY: help deps install generate lint test test-unit test-serving test-integration test-e2e \
	cluster-build images cluster-up cluster-down control-plane-up control-plane-down demo down \
	bench-serving bench-instructions bench-operator chart-lint clean kserve-client kind-image kind-up kind-load kind-e2e kind-demo kind-down

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

deps: ## Debian packages the tests and the local cluster need (root; only what is missing)
	hack/deps.sh

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip

# Reinstall only when the dependencies change, so `make test` stays fast when run again.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[operator,serving,dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the package with every extra

# KServe's REST client is one of the serving image's acceptance clients. It gets a virtualenv of
# its own because kserve pins the kubernetes client, grpc and pandas, which .venv must not inherit.
KSERVE_CLIENT := .cache/kserve-client
$(KSERVE_CLIENT)/.installed:
	python3 -m venv $(KSERVE_CLIENT)
	$(KSERVE_CLIENT)/bin/pip install -q 'kserve>=0.21,<0.22'
	touch $@

kserve-client: $(KSERVE_CLIENT)/.installed ## KServe's REST client, for the serving client tests

generate: install ## regenerate the CRD (top level and chart) and docs/api.md from the API models
	$(VENV)/bin/modeldeploy crd > $(CRD)
	cp $(CRD) $(CHART_CRD)
	$(VENV)/bin/modeldeploy docs > docs/api.md

lint: install ## ruff, mypy (strict) and the import-linter layer contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy operator/modeldeploy serving_image/modelserve hack/cluster/localcluster \
		hack/cluster/localkube.py hack/cluster/node/localnode.py hack/cluster/crd_discovery_lag.py
	$(VENV)/bin/lint-imports
	$(MAKE) --no-print-directory chart-lint

chart-lint: ## helm lint and helm template of the chart (helm pinned, from hack/helm.sh)
	h=$$(hack/helm.sh | tail -n 1); $$h lint --strict charts/modeldeploy \
		&& $$h template modeldeploy charts/modeldeploy >/dev/null
cluster-build: ## build etcd, the control plane, kubelet and kube-proxy from source (cached)
	hack/cluster/build.sh
	hack/cluster/build.sh kubelet kube-proxy

images: ## build the images from a debootstrap base (no registry); loads them into a running node
	hack/images/build.sh

# pytest exits 5 when it collected nothing: say so plainly instead of failing with make's code.
PYTEST = $(PY) -m pytest $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected in $(1)"; exit 0; fi; exit $$rc

test-unit: install ## pure tests and doctests, no cluster
	$(call PYTEST,tests/unit operator/modeldeploy --doctest-modules)

SERVING_ENV = MODELSERVE_KSERVE_PYTHON=$(abspath $(KSERVE_CLIENT))/bin/python

test-serving: install kserve-client ## the serving image's server on loopback, real ONNX Runtime
	$(SERVING_ENV) $(call PYTEST,tests/serving)

test-integration: install cluster-build ## tests against a real tier-1 control plane started for the run
	$(call PYTEST,tests/integration)

test-e2e: install cluster-build images ## end to end on a real node started for the run (root)
	MODELDEPLOY_E2E=node $(call PYTEST,tests/e2e)

# Every tier this machine can run; the e2e tier needs root and `make deps`.
test: install kserve-client cluster-build images ## unit, serving, integration and end-to-end tests (what CI runs)
	$(SERVING_ENV) $(call PYTEST,tests/unit operator/modeldeploy --doctest-modules tests/serving tests/integration)
	MODELDEPLOY_E2E=node $(call PYTEST,tests/e2e)

cluster-up: install cluster-build images ## control plane + a real node on this machine (root); prints KUBECONFIG
	$(PY) hack/cluster/node/localnode.py up

cluster-down: ## stop the node and the control plane, and remove every trace
	$(PY) hack/cluster/node/localnode.py down

control-plane-up: install cluster-build ## only the control plane (no node, no root needed)
	$(PY) hack/cluster/localkube.py up

control-plane-down: ## stop what control-plane-up started
	$(PY) hack/cluster/localkube.py down

demo: deps install cluster-build images ## the main job: a real node, the chart, a canary to promotion
	hack/demo.sh

down: cluster-down ## remove everything the demo started

# kind. On a machine with Docker and Docker Hub, kind-config.yaml's kindest/node image. Without a
# registry (the CI machine): `make kind-image`, then KIND_CONFIG=kind-config.ci.yaml, whose nodes
# run that image (.ci/run does both, after hack/kind/host-setup.sh adapts this VM's Docker).
KIND_CLUSTER ?= modeldeploy
KIND_CONFIG ?= kind-config.yaml
KIND_KUBECONFIG := .cache/kind.kubeconfig
KIND = "$$(hack/kind.sh | tail -n 1)"

kind-image: ## the kind node image built here, no registry (hack/kind/node-image.sh; cached)
	hack/kind/node-image.sh

kind-up: ## a kind cluster from $(KIND_CONFIG) (Docker): one control plane, two workers
	$(KIND) get clusters | grep -qx $(KIND_CLUSTER) || \
		$(KIND) create cluster --name $(KIND_CLUSTER) --config $(KIND_CONFIG) --wait 180s
	mkdir -p .cache && $(KIND) get kubeconfig --name $(KIND_CLUSTER) > $(KIND_KUBECONFIG)
	@echo "export KUBECONFIG=$(CURDIR)/$(KIND_KUBECONFIG)"

kind-load: ## build the images (Docker keeps them) and load them into the kind nodes
	hack/images/build.sh --no-load echo operator serving
	$(KIND) load docker-image --name $(KIND_CLUSTER) \
		modeldeploy/echo:dev modeldeploy/operator:dev modeldeploy/serving:dev

kind-e2e: install kind-up kind-load ## the end-to-end suite, unchanged, against the kind cluster
	MODELDEPLOY_E2E_KUBECONFIG=$(KIND_KUBECONFIG) $(call PYTEST,tests/e2e)

kind-demo: install kind-up kind-load ## the demo on kind instead of this machine's node
	DEMO_KUBECONFIG=$(KIND_KUBECONFIG) hack/demo.sh

kind-down: ## delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)
	rm -f $(KIND_KUBECONFIG)

bench-serving: install ## serving benchmark against peers (needs wrk; add --setup once)
	$(PY) benchmarks/serving.py

bench-instructions: install ## instructions per request under callgrind, beside BASELINE (a git ref)
	$(PY) benchmarks/serving_instructions.py $(if $(BASELINE),--baseline $(BASELINE))

bench-operator: install cluster-build ## 100 and 1,000 ModelDeployments on the control plane
	$(PY) benchmarks/operator_scale.py

clean: ## remove local state (the built binaries stay cached in ~/.cache/modeldeploy)
	-$(PY) hack/cluster/node/localnode.py down
	-$(PY) hack/cluster/localkube.py down
	rm -rf .cache .pytest_cache .mypy_cache .ruff_cache
