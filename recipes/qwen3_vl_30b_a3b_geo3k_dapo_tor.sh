#!/usr/bin/env bash
# Table 4 setting, "DAPO + ToR", with Qwen3-VL-30B-A3B-Instruct (mixture of experts, 31 B parameters, 3 B active)
# on Geometry3K, one 8 x 80 GB node. DAPO has no KL term, hence no reference model. What differs from the dense
# recipes is memory (recipes/README.md, "Memory"): FSDP2 shards the bf16 weights and gradients (2 x 62 GB over 8
# GPUs), the fp32 Adam state and master weights (31 B x 12 bytes = 373 GB) go to host memory, micro-batches hold
# 8,192 tokens, and each vLLM engine spans 4 GPUs (15.5 GB of weights each).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MOE_MEMORY=(
  actor_rollout_ref.actor.fsdp_config.optimizer_offload=true
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=8192
  actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=8192
)
run_recipe tor qwen3_vl_30b_a3b_geo3k_dapo_tor "DAPO + ToR" "$QWEN3_VL_30B_A3B" geo3k \
  "${DAPO[@]}" "${TOR[@]}" "${MOE_MEMORY[@]}" "$@"
