# verl-tor: every target works on a fresh clone; `make install` runs once and is a dependency of the others.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DATA_ROOT ?= $(HOME)/data/verl_tor
PYTEST_ARGS ?=

.PHONY: install test test-verl lint demo smoke smoke-recipes

install: $(STAMP)

# CPU-usable stack: torch 2.14.1 + torchvision 0.29.1 first (transformers' Qwen2.5-VL AutoProcessor needs a
# working torchvision; without one veRL's hf_processor silently returns None), then the project with veRL.
# virtualenv<21.14.6 spares pip a long backtrack over tensordict's `packaging` cap.
$(STAMP): setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e ".[test]" "virtualenv<21.14.6" torch==2.14.1 torchvision==0.29.1
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

# GRPO vs GRPO+ToR on CPU with veRL's real main_ppo (verl_tor/demo): `STEPS=N` sets the steps per arm, `SEED=S`
# the seed of everything (data, model, warm start, both arms); outputs go to outputs/demo/<timestamp>/ (metrics
# jsonl per arm, rewards.png, summary.md).
demo: install
	$(PY) -m verl_tor.demo $(if $(STEPS),--steps $(STEPS)) $(if $(SEED),--seed $(SEED))

# The same pipeline with 2 steps per arm and a short warm start: a few minutes.
smoke: install
	$(PY) -m verl_tor.demo --smoke

# Every recipe in recipes/ end to end with SMOKE=1 (one CPU step each, ~2 min per run; `make test` runs one).
smoke-recipes: install
	@set -e; for recipe in recipes/qwen2_5_vl_*.sh; do \
	  args=; case $$recipe in *_gamma_p.sh) args=0.5;; esac; \
	  echo "== $$recipe $$args"; SMOKE=1 PYTHON=$(abspath $(PY)) OUTPUT_DIR=$(CURDIR)/outputs/smoke-recipes bash $$recipe $$args; \
	done
	SMOKE=1 PYTHON=$(abspath $(PY)) OUTPUT_DIR=$(CURDIR)/outputs/smoke-recipes bash recipes/eval.sh

include data_prep/data.mk
