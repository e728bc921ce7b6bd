#!/usr/bin/env bash
# One-GPU smoke of the real recipe path: vLLM rollout, flash-attention, FSDP2, GRPO + ToR with every recipe setting
# of qwen2_5_vl_3b_geo3k_grpo_tor.sh except the sizes below, for STEPS (5) steps on a slice of Geometry3K
# (make data-geo3k), then the tor/* metrics, step times and peak GPU memory from the run's metrics
# (python -m verl_tor.launch.smoke_summary; it fails when no step or no tor/* metric was logged). About 15 minutes
# on one 80 GB GPU (an estimate: not yet run on a GPU by us). `make gpu-smoke` runs it.
#
#   bash recipes/gpu_smoke.sh [OVERRIDE...]      MODEL_PATH=<local model folder> to use a local copy
#
# The training state lives in host memory (FSDP2's CPU offload policy: ≈ 60 GB pinned for 3B), so that the update
# fits any 80 GB card; on a card of 100 GB or more, append actor_rollout_ref.actor.fsdp_config.offload_policy=false
# to run the recipes' engine path exactly (recipes/README.md, "Memory"). No checkpoint is written.
set -euo pipefail
N_GPUS_PER_NODE="${N_GPUS_PER_NODE:-1}"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [[ $SMOKE == 1 ]]; then
  echo "gpu_smoke.sh is the GPU check; the CPU smoke is SMOKE=1 bash recipes/qwen2_5_vl_3b_geo3k_grpo_tor.sh" >&2
  exit 2
fi
STEPS="${STEPS:-5}"
GPU_SMOKE=(
  # 8 prompts x 4 responses per step, two updates of 4 prompts; STEPS steps from 64 training rows, validation on 64
  # test rows after the last step (greedy, as the recipes validate).
  data.train_batch_size=8
  actor_rollout_ref.rollout.n=4
  actor_rollout_ref.actor.ppo_mini_batch_size=4
  data.train_max_samples=64
  data.val_max_samples=64
  trainer.total_training_steps="$STEPS"
  trainer.val_before_train=false
  trainer.test_freq="$STEPS"
  trainer.save_freq=-1
  actor_rollout_ref.actor.fsdp_config.offload_policy=true
)
run_recipe tor "gpu_smoke" "GRPO + ToR (one-GPU smoke)" "$QWEN25_VL_3B" geo3k \
  "${GRPO[@]}" "${TOR[@]}" "${GPU_SMOKE[@]}" "$@"
if [[ $DRY_RUN != 1 ]]; then
  "$PYTHON" -m verl_tor.launch.smoke_summary "$RUN_DIR"
fi
