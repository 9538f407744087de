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
# Every command takes Hydra overrides (key=value); these variables are shorthands for some.
OVERRIDES = $(if $(model),model=$(model)) $(if $(backend),backend=$(backend)) $(if $(workload),workload=$(workload)) $(ARGS)
DIAGNOSE_OVERRIDES = $(if $(backend),backend=$(backend)) $(ARGS)
# A side of a comparison or a parity check: free text, passed whole (the command quotes it for Hydra).
SIDES = $(if $(baseline),"baseline=$(baseline)") $(if $(candidate),"candidate=$(candidate)") $(if $(tolerance),tolerance=$(tolerance))

.PHONY: help setup wheelhouse gpu-check hami-core remoting-layer lint format bench sweep probe profile microbench sync ingest mlflow-server demo docs compare ab regressions pin-baseline parity report bench-overhead test test-deps ui clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-8s %s\n", $$1, $$2}'
	@echo "  variables: model=<zoo name> backend=<cpu|native|auto|vgpu|lupine|hami|mps|mig> workload=<infer|train|train_ddp|generate|serve> ARGS=\"<Hydra overrides>\""

setup: $(VENV)/.installed ## create .venv with everything (idempotent)

# Where the framework comes from (FRAMEWORK): `pinned`, this project's pins, torch first
# (the CPU build where there is no NVIDIA GPU, never the multi-GB CUDA stack; the
# registry's CUDA build where there is one), so the rest resolves against that torch;
# `host`, the torch/TensorFlow that $(PYTHON) already imports (an NGC-style image),
# reused through system site packages (and a path file to its own site packages, for a
# framework in a venv or conda environment of its own) and never reinstalled; `auto`: host when $(PYTHON)
# imports a CUDA build of torch or TensorFlow, else pinned.
FRAMEWORK ?= auto
# A folder from `make wheelhouse`: install from it alone, no package index (an offline GPU host).
WHEELHOUSE ?=
# Optional parts (pyproject extras) besides the core; from a wheelhouse, only what it holds.
comma := ,
EXTRAS ?= zoo$(if $(WHEELHOUSE),,$(comma)runtimes$(comma)tracking$(comma)cluster$(comma)test$(comma)ray)
# uv installs the same pins in seconds where pip takes minutes; it ignores pip's settings,
# so the local wheel folder is passed on, and pip does the whole install where uv fails.
# Bytecode is compiled at install time, as pip does: where PYTHONDONTWRITEBYTECODE is set
# (CI), every worker would otherwise compile torch, transformers and TensorFlow anew.
# The .pth file makes `import torchvision` work first in any script (zoo/torchvision_hook.py).
$(VENV)/.installed: pyproject.toml
	@set -e; host=""; \
	[ "$(FRAMEWORK)" = pinned ] || host="$$($(PYTHON) runners/cli/host_framework.py $(if $(filter host,$(FRAMEWORK)),--any))"; \
	if [ "$(FRAMEWORK)" = host ] && [ -z "$$host" ]; then \
		echo "error: FRAMEWORK=host, but $(PYTHON) imports neither torch nor TensorFlow. Valid: FRAMEWORK=auto, pinned, host"; exit 2; fi; \
	extras="$(EXTRAS)"; \
	if [ -n "$$host" ]; then \
		echo "setup: using the framework $(PYTHON) already has: $$host (system site packages; none installed)"; \
		$(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
		$(PYTHON) -m venv $(VENV); extras="frameworks$${extras:+,$$extras}"; \
	fi; \
	purelib="$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"; \
	[ -z "$$host" ] || $(PYTHON) -c 'import site; print(f"import site; list(map(site.addsitedir, {site.getsitepackages()!r}))")' \
		> "$$purelib/vgpu_bench_host_site.pth"; \
	export UV_FIND_LINKS="$${UV_FIND_LINKS:-$$PIP_FIND_LINKS}" UV_COMPILE_BYTECODE=1; \
	if [ -n "$(WHEELHOUSE)" ]; then \
		install() { $(VENV)/bin/pip install -q --no-index --find-links "$(abspath $(WHEELHOUSE))" "$$@"; }; \
	elif $(VENV)/bin/pip install -q uv 2>/dev/null; then \
		install() { $(VENV)/bin/uv pip install -q --python $(PY) "$$@" || $(VENV)/bin/pip install -q "$$@"; }; \
	else \
		install() { $(VENV)/bin/pip install -q "$$@"; }; \
	fi; \
	if [ -z "$$host" ]; then \
		if nvidia-smi -L >/dev/null 2>&1; then install "torch==$(TORCH_VERSION)"; \
		else install "torch==$(TORCH_VERSION)+cpu" 2>/dev/null \
			|| install "torch==$(TORCH_VERSION)+cpu" --index-url $(TORCH_CPU_INDEX); fi; \
	fi; \
	install -e ".$${extras:+[$$extras]}"; \
	echo "import zoo.torchvision_hook as hook; hook.install()" > "$$purelib/vgpu_bench_zoo.pth"
	$(PY) -m compileall -q runners zoo hydra_plugins >/dev/null  # bytecode once: PYTHONDONTWRITEBYTECODE=1 made every process recompile (~80 ms a worker)
	@# MLflow's schema once (2-5 s of migrations): every new sqlite store starts as a copy of it
	$(PY) -c "from runners.tracking.write import make_schema_template as m; m()" 2>/dev/null || true
	$(PY) -c "import runners.cli.bench, zoo" && touch $@

# For an offline GPU host: make wheelhouse WHEEL_PYTHON=3.12 WHEEL_PLATFORM="manylinux_2_28_x86_64 manylinux_2_17_x86_64"
WHEELHOUSE_DIR ?= wheelhouse
WHEEL_PYTHON ?=
WHEEL_PLATFORM ?=
WHEEL_EXTRAS ?= zoo
wheelhouse: ## wheels of everything but the framework, for make setup WHEELHOUSE=<dir> on a host with no index
	$(PYTHON) runners/cli/wheelhouse.py --dest $(WHEELHOUSE_DIR) $(if $(WHEEL_PYTHON),--python $(WHEEL_PYTHON)) \
		$(foreach p,$(WHEEL_PLATFORM),--platform $(p)) --extras "$(WHEEL_EXTRAS)"

bench: setup ## run one workload (defaults: model=bert workload=infer backend=auto)
	@$(PY) -m runners.cli.bench $(OVERRIDES)

sweep: setup ## run a Hydra multirun over comma-separated values in ARGS
	@$(PY) -m runners.cli.bench --multirun $(OVERRIDES)

probe: setup ## check a GPU backend's memory quota and compute share: make probe backend=mps
	@$(PY) -m runners.cli.diagnose diagnostic=probe $(DIAGNOSE_OVERRIDES)

demo: setup ## short real inference: make demo model=resnet50 input=cat.jpg [weights=<local file or dir>]
	@$(PY) -m runners.cli.demo $(if $(model),model=$(model)) "input=$(input)" $(if $(weights),"model.weights=$(weights)") $(if $(size),model.size=$(size)) $(ARGS)

docs: setup ## regenerate docs/zoo.md (the model cards) from the registry
	$(PY) -m zoo cards > docs/zoo.md

compare: setup ## compare two sides of recorded runs: make compare baseline="backend=native" candidate="backend=vgpu"
	@$(PY) -m runners.cli.analyze compare $(SIDES) $(ARGS)

ab: setup ## interleaved A/B, the release gate (exit 1 if slower): make ab baseline="backend=native" candidate="backend=vgpu" repeats=5
	@$(PY) -m runners.cli.ab $(if $(model),model=$(model)) $(SIDES) $(if $(repeats),repeats=$(repeats)) $(ARGS)

regressions: setup ## later runs vs a baseline, with ratios (a verdict only for runs alternated in time: gate with make ab): make regressions baseline="label=rel-2.3"
	@$(PY) -m runners.cli.analyze regressions $(SIDES) $(ARGS)

pin-baseline: setup ## remember a baseline for make regressions: make pin-baseline baseline="label=rel-2.3"
	@$(PY) -m runners.cli.analyze pin-baseline $(SIDES) $(ARGS)

parity: setup ## same seeded inputs on baseline and candidate: make parity model=bert candidate="backend=vgpu"
	@$(PY) -m runners.cli.parity $(if $(model),model=$(model)) $(SIDES) $(ARGS)

report: setup ## HTML report with plots: make report baseline="backend=native" candidate="backend=mps"
	@$(PY) -m runners.cli.analyze report $(SIDES) $(ARGS)

bench-overhead: setup ## benchmark: a make-bench worker vs a hand-written loop, suite/loop step time: make bench-overhead backend=native ARGS="rounds=5"
	@$(PY) -m runners.cli.bench_overhead $(if $(backend),backend=$(backend)) $(ARGS)

# The null server answers at once, one request per batch: what is left is the generator, the
# socket and the server loop. Kept as a reference: results/reference/cpu/serve-loadgen.txt.
.PHONY: bench-loadgen
bench-loadgen: setup ## benchmark: the serve load generator against a null server: make bench-loadgen ARGS="serve.rate=5000 repeats=10"
	@dir="$${VGPU_BENCH_RESULTS:-$(RESULTS)}"; \
	$(PY) -m runners.cli.bench model=dummy model.size=instant workload=serve backend=cpu tracking=none \
		serve.rate=5000 serve.duration_s=5 serve.max_batch_size=1 serve.poll_us=1000 repeats=10 results_dir="$$dir" $(ARGS) >/dev/null \
	&& $(PY) -m runners.analysis.serve_benchmark "$$dir"

profile: setup ## profile a workload: trace, top ops, per-step launches/API calls/bytes: make profile model=bert backend=native
	@$(PY) -m runners.cli.bench profile=true $(OVERRIDES)

microbench: setup ## launch, sync, malloc, memcpy, GEMM microbenchmarks of a GPU backend: make microbench backend=mps
	@$(PY) -m runners.cli.diagnose diagnostic=microbench $(DIAGNOSE_OVERRIDES)

sync: setup ## log every result that could not reach the tracking store when it ran (exactly once)
	@$(PY) -m runners.cli.sync $(ARGS)

ingest: setup ## load result files from a directory into MLflow, skipping those already there: make ingest DIR=<dir>
	@$(PY) -m runners.cli.sync "dir=$(DIR)" $(ARGS)

# One run, the long tests first (tests/conftest.py), then the unit tests (fast, no subprocess)
# and the integration tests: two passes left one core idle in each one's tail. Three processes
# on this project's 2-core machine: a tenth of two processes' time is spent waiting (servers at
# a set rate, daemons, timeouts), and a third fills it. The tests took 6:40 and 7:36 with three,
# 7:14 and 7:47 with two, the machine's own speed drifting as much between those runs; tests
# must hold on a busy machine anyway (a live A/B test runs three a side for it).
TEST_WORKERS ?= 3
test: setup test-deps lint ## lint, then the tests: unit (no subprocess) and integration, on TEST_WORKERS processes
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup tests/unit tests/integration $(PYTEST_ARGS)

lint: setup ## ruff: the formatter's check and the linter (make format applies the formatter)
	$(VENV)/bin/ruff format --check --quiet runners zoo tests hydra_plugins || { echo "run: make format"; exit 1; }
	$(VENV)/bin/ruff check --quiet runners zoo tests hydra_plugins

format: setup ## apply ruff's formatter and safe lint fixes
	$(VENV)/bin/ruff format --quiet runners zoo tests hydra_plugins
	$(VENV)/bin/ruff check --fix --quiet runners zoo tests hydra_plugins

# Two tests use real system programs: the report opened in headless Chromium, and the
# team server on a real PostgreSQL. Install Debian's packages where this user may (root
# with apt); elsewhere those tests skip and say so.
TEST_PACKAGES := chromium postgresql
test-deps:
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; } >/dev/null 2>&1; } \
		|| echo "note: could not install$$missing; the tests that need them will skip"

HOST ?= 127.0.0.1
# MLflow 3's server also starts a job runner (huey consumers, periodic tasks) for GenAI
# evaluation jobs; the suite logs classic runs and needs none of it. MLFLOW_JOBS=true keeps it.
MLFLOW_JOBS ?= false
MLFLOW_WORKERS ?= 2
mlflow-server: setup ## team tracking server on $(HOST):$(PORT); PostgreSQL when MLFLOW_BACKEND_URI is set, else the sqlite file
	MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$(MLFLOW_JOBS) $(VENV)/bin/mlflow server --host $(HOST) --port $(PORT) --workers $(MLFLOW_WORKERS) \
		--backend-store-uri "$${MLFLOW_BACKEND_URI:-sqlite:///$(abspath $(RESULTS))/mlflow.db}" \
		--artifacts-destination "$${MLFLOW_ARTIFACTS_DESTINATION:-$(abspath $(RESULTS))/server-artifacts}" --serve-artifacts

# One person browsing needs one worker process (mlflow ui starts 4 by default, each a full MLflow).
# It prints the address to open: the suite's runs table with its columns (a saved view).
ui: setup ## browse results: MLflow UI on http://127.0.0.1:$(PORT), opened on the suite's runs table
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$(MLFLOW_JOBS) $(PY) -m runners.cli.ui --results "$(abspath $(RESULTS))" --host 127.0.0.1 --port $(PORT)

clean: ## remove the virtualenv and caches (results/ is kept)
	rm -rf $(VENV) .pytest_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

hami-core: ## build HAMi-core's libvgpu.so offline into build/hami-core/: make hami-core SRC=<HAMi-core source folder>
	@sh scripts/build_hami_core.sh "$(SRC)" build/hami-core

remoting-layer: ## build LUPINE's client shims and server offline into build/lupine/: make remoting-layer SRC=<LUPINE source folder>
	@sh scripts/build_lupine.sh "$(SRC)" build/lupine

gpu-check: setup ## every GPU path on this machine's GPU in <= 8 min; evidence in results/reference/<gpu>/ (ARGS="dry_run=true": the plan)
	@$(PY) -m runners.cli.gpu_check $(ARGS)
