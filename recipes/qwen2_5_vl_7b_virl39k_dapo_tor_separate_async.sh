#!/usr/bin/env bash
# "DAPO + ToR" trained on ViRL39K with Qwen2.5-VL-7B-Instruct in veRL's separate_async trainer mode, for several
# nodes: NNODES nodes train (default 2) and ROLLOUT_NNODES nodes only generate (default 2), weights synced over NCCL
# every step; each step makes PARAMETER_SYNC_STEP local updates of train_batch_size / PARAMETER_SYNC_STEP prompts
# (4 x 128, the paper's mini-batch), and ToR selects over each local update's samples with the weights of its
# old-log-prob forward (README.md, "Trainer modes"). Not runnable with SMOKE=1: the NCCL weight sync needs GPUs.
set -euo pipefail
NNODES="${NNODES:-2}"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [[ $SMOKE == 1 ]]; then
  echo "separate_async syncs weights over NCCL (GPUs only): no SMOKE=1 run; DRY_RUN=1 prints the GPU command" >&2
  exit 2
fi
PROMPT_LENGTH=8192  # as the synchronous ViRL39K recipe: every row is trained on
run_recipe tor qwen2_5_vl_7b_virl39k_dapo_tor_separate_async "DAPO + ToR, separate_async" "$QWEN25_VL_7B" virl39k \
  "${DAPO[@]}" "${TOR[@]}" "${SEPARATE_ASYNC[@]}" "$@"
