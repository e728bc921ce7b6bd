#!/usr/bin/env bash
# "DAPO + ToR" trained on ViRL39K with Qwen2.5-VL-7B-Instruct in veRL's separate_async trainer mode, for several
# nodes: NNODES nodes train (default 2) and ROLLOUT_NNODES nodes only generate (default 2), weights synced over NCCL
# every step; each step makes PARAMETER_SYNC_STEP local updates of train_batch_size / PARAMETER_SYNC_STEP prompts
# (4 x 128, the paper's mini-batch), and ToR selects over each local update's samples with the weights of its
# old-log-prob forward (README.md, "Trainer modes"). No SMOKE=1 run (recipes/README.md, "SMOKE=1"): veRL 0.9.1's
# separate_async trainer refuses its in-process `naive` checkpoint engine (weights must cross from the training
# pool to the rollout pool), and the engines it offers for that (nccl, hccl, nixl, mooncake, kimi_ckpt_engine) need
# CUDA/NCCL, Ascend or RDMA libraries; veRL has no gloo/CPU one. DRY_RUN=1 prints the GPU command, and
# tests/test_recipes.py composes it and builds its trainer through veRL's own checks.
set -euo pipefail
NNODES="${NNODES:-2}"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [[ $SMOKE == 1 ]]; then
  echo "separate_async has no SMOKE=1 run: veRL 0.9.1 syncs its rollout pool through a checkpoint engine that" \
    "needs GPUs (nccl; it refuses the in-process 'naive' one) and has no CPU engine. DRY_RUN=1 prints the GPU" \
    "command." >&2
  exit 2
fi
PROMPT_LENGTH=8192  # as the synchronous ViRL39K recipe: every row is trained on
run_recipe tor qwen2_5_vl_7b_virl39k_dapo_tor_separate_async "DAPO + ToR, separate_async" "$QWEN25_VL_7B" virl39k \
  "${DAPO[@]}" "${TOR[@]}" "${SEPARATE_ASYNC[@]}" "$@"
