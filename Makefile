# verl-tor: every target works on a fresh clone; `make install` (the CPU .venv) runs once and is a dependency of the
# CPU targets. The GPU targets (install-gpu, preflight) and data-* use their own or the active interpreter.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DATA_ROOT ?= $(HOME)/data/verl_tor
PYTEST_ARGS ?=

.PHONY: install test test-verl lint demo smoke study smoke-recipes install-gpu preflight check-gpu-install gpu-smoke

install: $(STAMP)

# CPU-usable stack: torch 2.14.1 + torchvision 0.29.1 first (transformers' Qwen2.5-VL AutoProcessor needs a
# working torchvision; without one veRL's hf_processor silently returns None), then the project with veRL.
# transformers 5.9.0: what veRL's vllm extra pins, i.e. what GPU users run (veRL alone would resolve 5.10.x).
# virtualenv<21.14.6 spares pip a long backtrack over tensordict's `packaging` cap.
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes torch and torchvision from PyTorch's CPU-only index
# (docs/gpu-install.md, "The CPU .venv"); unset, from the configured index (PyPI's Linux wheels bundle CUDA).
TORCH_INDEX_URL ?=
$(STAMP): setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e ".[test]" "virtualenv<21.14.6" torch==2.14.1 torchvision==0.29.1 transformers==5.9.0
	@# veRL's verl-core pulls torchcodec; a wheel that does not match the installed torch fails at import and
	@# takes transformers' video processing down with it. Images never need it, so drop it when broken.
	@$(PY) -c "import torchcodec" 2>/dev/null || { echo "torchcodec does not import here: uninstalling it (video decoding only)"; $(PIP) uninstall --quiet -y torchcodec; }
	$(PY) -c "import verl, verl_tor, torchvision; print('verl', verl.__version__, '| torchvision', torchvision.__version__)"
	touch $(STAMP)

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

# veRL's own CPU test suite (the *_on_cpu.py files its wheel ships) in a process that loads our plugin: our
# registrations and patches must leave it as green as without them (~2 min). Run from site-packages, because one
# of its tests reads veRL's rollout.yaml by a relative path.
test-verl: install
	$(PY) -c "import sys, verl; assert 'verl_tor.plugin' in sys.modules, 'verl-tor plugin not loaded'"
	cd "$$($(abspath $(PY)) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" && \
	  $(abspath $(PY)) -m pytest -q -p no:cacheprovider $$(find tests -name '*_on_cpu.py' | sort)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# GRPO vs GRPO+ToR on CPU with veRL's real main_ppo (verl_tor/demo; README, "The CPU demo"): `STEPS=N` sets the
# steps per arm, `SEED=S` the seed of everything (data, model, warm start, both arms; the same seed gives the same
# run), `FAMILY=F` the tiny model's family (qwen2_5_vl default, qwen3_vl, qwen3_vl_moe, qwen3_5, qwen3_5_moe);
# outputs go to outputs/demo/<timestamp>/ (summary.md, curves.png, inspect.html, metrics jsonl per arm).
demo: install
	$(PY) -m verl_tor.demo $(if $(STEPS),--steps $(STEPS)) $(if $(SEED),--seed $(SEED)) $(if $(FAMILY),--family $(FAMILY))

# The same pipeline with 2 steps per arm and a short warm start: a few minutes.
smoke: install
	$(PY) -m verl_tor.demo --smoke $(if $(FAMILY),--family $(FAMILY))

# Token-credit methods side by side on the demo's task (docs/demo.md, "The methods side by side"): one arm per
# METHODS entry (grpo first: the baseline every arm is paired with; also reasoning_only, perception_only) for SEEDS
# seeds, 3–5 min per seed and arm on 2 cores. Default 6 seeds: the fewest at which the paired sign-flip test can
# give p < 0.05 at all (1.5–2.5 hours for the five methods). outputs/study/<timestamp>/study.md, .png, .json; OUT=dir
# continues a study in dir (arms it finished are read back: more SEEDS or METHODS add only the missing runs).
METHODS ?= grpo,tor,vppo,pgpo,entropy_top20
SEEDS ?= 6
study: install
	$(PY) -m verl_tor.demo.study --methods $(METHODS) --seeds $(SEEDS) $(if $(STEPS),--steps $(STEPS)) $(if $(OUT),--out $(OUT))

# Every recipe in recipes/ end to end with SMOKE=1 (one CPU step each, ~2 min per run; `make test` runs one),
# except the separate_async one: veRL 0.9.1 syncs its rollout pool through a GPU checkpoint engine (nccl; it refuses
# the in-process `naive` one) and has no CPU engine (recipes/README.md, "SMOKE=1"). gpu_smoke.sh is the GPU check.
smoke-recipes: install
	@set -e; for recipe in recipes/qwen*.sh; do \
	  args=; case $$recipe in *_gamma_p.sh) args=0.5;; \
	    *_separate_async.sh) echo "== $$recipe: skipped (needs a GPU checkpoint engine; recipes/README.md, SMOKE=1)"; continue;; esac; \
	  echo "== $$recipe $$args"; SMOKE=1 PYTHON=$(abspath $(PY)) OUTPUT_DIR=$(CURDIR)/outputs/smoke-recipes bash $$recipe $$args; \
	done
	SMOKE=1 PYTHON=$(abspath $(PY)) OUTPUT_DIR=$(CURDIR)/outputs/smoke-recipes bash recipes/eval.sh

# ----------------------------------------------------------------------------------------- GPU machines
# The GPU install as a sequence (docs/gpu-install.md), into $(GPU_VENV) with $(PYTHON3): first the build checks
# (verl_tor/launch/build_check.py: Python version, nvcc 13 / CUDA_HOME, a C++ compiler, Python headers, and the
# flash-attn build settings FLASH_ATTN_CUDA_ARCHS (this node's GPUs) and MAX_JOBS (8 GB of memory a job), all
# before the first multi-GB download); then veRL 0.9.1's pins of torch, vLLM and transformers (its vllm and fsdp
# extras); then flash-attn built against that torch without build isolation (its setup.py imports torch, which
# pip's isolated build environment lacks), or FLASH_ATTN_WHEEL=<url or file> (a wheel built elsewhere); then this
# package; then the preflight, whose failure fails the target.
GPU_VENV ?= .venv-gpu
PYTHON3 ?= python3
GPU_STACK := torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0 vllm==0.24.0 transformers==5.9.0
FLASH_ATTN := flash-attn==2.8.3
FLASH_ATTN_BUILD_DEPS := setuptools wheel packaging psutil ninja
FLASH_ATTN_WHEEL ?=
FLASH_ATTN_CUDA_ARCHS ?=
MAX_JOBS ?=
OUTPUT_DIR ?= $(HOME)/verl_tor_runs
N_GPUS_PER_NODE ?= 8
NNODES ?= 1

install-gpu:
	@set -euo pipefail; \
	build=$$(FLASH_ATTN_CUDA_ARCHS="$(FLASH_ATTN_CUDA_ARCHS)" MAX_JOBS="$(MAX_JOBS)" \
	  $(PYTHON3) -m verl_tor.launch.build_check $(if $(FLASH_ATTN_WHEEL),--wheel "$(FLASH_ATTN_WHEEL)")); \
	set -x; \
	test -x $(GPU_VENV)/bin/python || $(PYTHON3) -m venv $(GPU_VENV); \
	$(GPU_VENV)/bin/pip install --upgrade pip; \
	$(GPU_VENV)/bin/pip install $(GPU_STACK) $(FLASH_ATTN_BUILD_DEPS); \
	$(if $(FLASH_ATTN_WHEEL),$(GPU_VENV)/bin/pip install --no-deps "$(FLASH_ATTN_WHEEL)",env $$build $(GPU_VENV)/bin/pip install --no-build-isolation $(FLASH_ATTN)); \
	$(GPU_VENV)/bin/pip install -e ".[gpu]" $(GPU_STACK)
	@$(MAKE) --no-print-directory preflight PREFLIGHT_PYTHON=$(GPU_VENV)/bin/python || \
	  { echo "install-gpu: the packages are installed in $(GPU_VENV), but the preflight above failed"; exit 1; }

# The interpreter of `make preflight` and `make data-*`: the active environment's (an activated virtualenv, else an
# active conda environment), else $(GPU_VENV) when it exists. With neither, data-* use .venv (built by `make install`,
# as on a fresh clone) and preflight python3. PREFLIGHT_PYTHON=... or DATA_PYTHON=... names another.
ACTIVE_PY := $(firstword $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV)/bin/python) $(if $(CONDA_PREFIX),$(CONDA_PREFIX)/bin/python) \
  $(wildcard $(GPU_VENV)/bin/python))

# This node, before a first run (every recipe runs it too; docs/gpu-install.md, "What the preflight checks"). On a
# multi-node cluster run it on every node with the run's NNODES, so that the shared-folder checks fire. MODEL=<a
# local folder or a Hub id>, FAMILY=<qwen2_5_vl|qwen3_vl|qwen3_vl_moe|qwen3_5> and PARAMS_B=<billions> add the model,
# disk and host-memory checks (a recipe passes all three).
PREFLIGHT_PYTHON ?= $(or $(ACTIVE_PY),python3)
MODEL ?=
FAMILY ?=
PARAMS_B ?=
preflight:
	$(PREFLIGHT_PYTHON) -m verl_tor.launch.preflight --gpus $(N_GPUS_PER_NODE) --nnodes $(NNODES) \
	  --output-dir $(OUTPUT_DIR) --shared $(DATA_ROOT) $(if $(MODEL),--model $(MODEL)) $(if $(FAMILY),--family $(FAMILY)) \
	  $(if $(PARAMS_B),--params-b $(PARAMS_B))

# One GPU, ≈ 15 min (estimated; not yet run on a GPU by us): the 3B GRPO + ToR recipe's path (vLLM, flash-attn,
# FSDP2) for 5 steps on a slice of Geometry3K (make data-geo3k), then its tor/* metrics, step time and peak memory
# (recipes/gpu_smoke.sh). MODEL_PATH=<folder> for a local model. Runs with the GPU venv's python when there is one.
GPU_SMOKE_PYTHON ?= $(if $(wildcard $(GPU_VENV)/bin/python),$(abspath $(GPU_VENV)/bin/python),python)
gpu-smoke:
	PYTHON=$(GPU_SMOKE_PYTHON) DATA_ROOT=$(DATA_ROOT) OUTPUT_DIR=$(OUTPUT_DIR) bash recipes/gpu_smoke.sh

# CI, after `make test` (needs the package index, never run by `make test`): the GPU install sequence resolves, in
# a throwaway venv under /tmp, with flash-attn's CUDA build skipped (FLASH_ATTENTION_SKIP_CUDA_BUILD=TRUE: its
# setup.py still imports torch, hence a small CPU torch there, CHECK_BUILD_TORCH). Resolution only (pip --dry-run),
# but where the index serves no PEP 658 metadata (this machine's mirror) pip downloads every wheel to read it:
# ≈ 3.9 GB and ≈ 2 min here.
CHECK_BUILD_TORCH ?= torch==2.13.0+cpu
CHECK_PIP_ARGS ?=
check-gpu-install:
	@set -euo pipefail; dir=$$(mktemp -d /tmp/verl-tor-gpu-install.XXXXXX); trap 'rm -rf "$$dir"' EXIT; \
	start=$$(date +%s); python3 -m venv "$$dir/venv"; pip="$$dir/venv/bin/pip"; \
	$$pip install --quiet --upgrade pip; \
	$$pip install --quiet $(CHECK_PIP_ARGS) $(FLASH_ATTN_BUILD_DEPS) "$(CHECK_BUILD_TORCH)"; \
	echo "resolving: $(GPU_STACK) $(FLASH_ATTN) -e .[gpu]"; \
	FLASH_ATTENTION_SKIP_CUDA_BUILD=TRUE $$pip install --quiet --dry-run --no-build-isolation $(CHECK_PIP_ARGS) \
	  --report "$$dir/report.json" $(GPU_STACK) $(FLASH_ATTN) -e ".[gpu]"; \
	python3 -c 'import json, sys; names = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"] \
	  for i in json.load(open(sys.argv[1]))["install"]}; want = dict(a.split("==") for a in sys.argv[2:]); \
	  wrong = {k: (v, names.get(k)) for k, v in want.items() if names.get(k) != v}; \
	  sys.exit(f"resolved other versions (wanted, got): {wrong}") if wrong else \
	  print(f"GPU install resolves: {len(names)} packages, " + ", ".join(f"{k} {v}" for k, v in want.items()))' \
	  "$$dir/report.json" $(GPU_STACK) $(FLASH_ATTN) verl==0.9.1 verl-tor==0.1.0; \
	echo "check-gpu-install took $$(( $$(date +%s) - start )) s"

include verl_tor/data_prep/data.mk

# The audit (docs/audit.md) on the CPU demo: each method's token choices at the warm-start model and at the last
# GRPO+ToR checkpoint of the newest complete outputs/demo run (a smoke demo first when there is none; DEMO=dir picks
# a run), against the task's ground truth: outputs/audit-demo/<time>/audit_table.md and one audit.html per model.
.PHONY: audit
audit: install
	$(PY) -m verl_tor.audit.demo $(if $(DEMO),--demo $(DEMO))
