# vgpu-bench. `make help` lists the targets. Every target installs what it needs first.
#   make bench model=resnet50 backend=cpu workload=train ARGS="model.size=tiny label=try1"
#   make sweep ARGS="model=bert,resnet50 workload=infer,train"

SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
# Where a CPU build of torch comes from when no local wheel has it (pip's find-links first).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
RESULTS ?= results
PORT ?= 5000
OVERRIDES = $(if $(model),model=$(model)) $(if $(backend),backend=$(backend)) $(if $(workload),workload=$(workload)) $(ARGS)

.PHONY: help setup bench sweep probe test ui clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-8s %s\n", $$1, $$2}'
	@echo "  variables: model=<zoo name> backend=<cpu|native|auto|vgpu|hami|mps|mig> workload=<infer|train> ARGS=\"<Hydra overrides>\""

setup: $(VENV)/.installed ## create .venv with everything (idempotent)

# torch first, pinned: the CPU build where there is no NVIDIA GPU (never the multi-GB
# CUDA stack), the registry's CUDA build where there is one. The rest then resolves
# against that torch and installs nothing torch-related on top.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if nvidia-smi -L >/dev/null 2>&1; then \
		$(VENV)/bin/pip install -q "torch==$(TORCH_VERSION)"; \
	else \
		$(VENV)/bin/pip install -q "torch==$(TORCH_VERSION)+cpu" 2>/dev/null \
		|| $(VENV)/bin/pip install -q "torch==$(TORCH_VERSION)+cpu" --index-url $(TORCH_CPU_INDEX); \
	fi
	$(VENV)/bin/pip install -q -e ".[test]"
	$(PY) -c "import runners.bench, zoo" && touch $@

bench: setup ## run one workload (defaults: model=bert workload=infer backend=auto)
	@$(PY) -m runners.bench $(OVERRIDES)

sweep: setup ## run a Hydra multirun over comma-separated values in ARGS
	@$(PY) -m runners.bench --multirun $(OVERRIDES)

probe: setup ## check a GPU backend's memory quota and compute share: make probe backend=mps
	@$(PY) -m runners.bench workload=probe $(OVERRIDES)

test: setup ## run the test suite (CPU; GPU tests skip without a GPU)
	$(PY) -m pytest -q $(PYTEST_ARGS)

ui: setup ## browse results: MLflow UI on http://127.0.0.1:$(PORT)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(abspath $(RESULTS))/mlflow.db --host 127.0.0.1 --port $(PORT)

clean: ## remove the virtualenv and caches (results/ is kept)
	rm -rf $(VENV) .pytest_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
