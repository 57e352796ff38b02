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

# Reinstall only when the dependencies change, so `make test` stays fast when run again.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[operator,serving,dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the package with every extra

generate: install ## regenerate the CRD (top level and chart) and docs/api.md from the API models
	$(VENV)/bin/modeldeploy crd > $(CRD)
	cp $(CRD) $(CHART_CRD)
	$(VENV)/bin/modeldeploy docs > docs/api.md

lint: install ## ruff, mypy (strict) and the import-linter layer contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy operator/modeldeploy serving_image/modelserve hack/cluster/localkube.py
	$(VENV)/bin/lint-imports

cluster-build: ## build etcd and the Kubernetes control plane from source (cached)
	hack/cluster/build.sh

# pytest exits 5 when it collected nothing: say so plainly instead of failing with make's code.
PYTEST = $(PY) -m pytest $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected in $(1)"; exit 0; fi; exit $$rc

test-unit: install ## pure tests and doctests, no cluster
	$(call PYTEST,tests/unit operator/modeldeploy --doctest-modules)

test-integration: install cluster-build ## tests against a real tier-1 control plane started for the run
	$(call PYTEST,tests/integration)

test: install cluster-build ## unit and integration tests (what CI runs)
	$(call PYTEST,tests/unit operator/modeldeploy --doctest-modules tests/integration)

cluster-up: install cluster-build ## start a tier-1 control plane in the background; prints KUBECONFIG
	$(PY) hack/cluster/localkube.py up

cluster-down: ## stop the control plane started by cluster-up
	$(PY) hack/cluster/localkube.py down

demo: install cluster-build ## the main job (for now: control plane, CRD, example; see README)
	hack/demo.sh

clean: ## remove local state (the built binaries stay cached in ~/.cache/modeldeploy)
	-$(PY) hack/cluster/localkube.py down
	rm -rf .cache .pytest_cache .mypy_cache .ruff_cache
