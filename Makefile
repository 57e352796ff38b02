# modeldeploy: the commands a developer and CI run. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CRD := crds/modeldeployments.modeldeploy.io.yaml
CHART_CRD := charts/modeldeploy/crds/modeldeployments.modeldeploy.io.yaml

.PHONY: help install generate lint test test-unit test-integration cluster-build cluster-up cluster-down demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip

install: $(PY) ## create .venv and install the package with every extra
	$(PY) -m pip install -q -e '.[operator,serving,dev]'

generate: ## regenerate the CRD (top level and chart) and docs/api.md from the API models
	$(VENV)/bin/modeldeploy crd > $(CRD)
	cp $(CRD) $(CHART_CRD)
	$(VENV)/bin/modeldeploy docs > docs/api.md

lint: ## ruff, mypy (strict) and the import-linter layer contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy operator/modeldeploy serving_image/modelserve hack/cluster/localkube.py
	$(VENV)/bin/lint-imports

cluster-build: ## build etcd and the Kubernetes control plane from source (cached)
	hack/cluster/build.sh

test-unit: ## pure tests, no cluster
	$(PY) -m pytest tests/unit

test-integration: cluster-build ## tests against a real tier-1 control plane started for the run
	$(PY) -m pytest tests/integration

test: cluster-build ## unit and integration tests (what CI runs)
	$(PY) -m pytest tests/unit tests/integration

cluster-up: cluster-build ## start a tier-1 control plane in the background; prints KUBECONFIG
	$(PY) hack/cluster/localkube.py up

cluster-down: ## stop the control plane started by cluster-up
	$(PY) hack/cluster/localkube.py down

demo: ## the main job (placeholder until the end-to-end issue lands): control plane + example
	hack/demo.sh

clean: ## remove local state (the built binaries stay cached in ~/.cache/modeldeploy)
	-$(PY) hack/cluster/localkube.py down
	rm -rf .cache .pytest_cache .mypy_cache .ruff_cache
