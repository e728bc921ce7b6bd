# Data preparation targets (included by the top-level Makefile): public Hugging Face datasets -> veRL RL parquet.
# Each dataset lands in $(DATA_ROOT)/<name>/<split>.parquet with a manifest.json; see verl_tor/data_prep/README.md.
# DATA_ARGS is passed to every converter, e.g. DATA_ARGS="--revision <commit>". They run with DATA_PYTHON: the
# active environment's interpreter, else the GPU venv (ACTIVE_PY in the Makefile), installing nothing; with neither,
# .venv's, which `make install` then builds first (a fresh clone).
DATA_ARGS ?=
DATA_PYTHON ?= $(or $(ACTIVE_PY),$(PY))
DATA_TRAIN_SETS := geo3k virl39k mmk12
DATA_EVAL_SETS := mathverse mathvision mathvista wemath hallusionbench dynamath logicvista
DATA_TARGETS := $(addprefix data-,$(DATA_TRAIN_SETS) $(DATA_EVAL_SETS))

.PHONY: data-eval $(DATA_TARGETS)

$(DATA_TARGETS): data-%: $(if $(filter $(PY),$(DATA_PYTHON)),install)
	$(DATA_PYTHON) -m verl_tor.data_prep.$* --local_save_dir $(DATA_ROOT)/$* $(DATA_ARGS)

data-eval: $(addprefix data-,$(DATA_EVAL_SETS))
