#!/usr/bin/env bash
# Table 4 setting, "DAPO + ToR", with Qwen3-VL-30B-A3B-Instruct (mixture of experts, 31 B parameters, 3 B active)
# on Geometry3K, one 8 x 80 GB node. DAPO has no KL term, hence no reference model. What differs from the dense
# recipes is memory (recipes/README.md, "Qwen3-VL-30B-A3B"): veRL trains fp32 parameters, so the update needs
# 31.07 B x 16 bytes (fp32 weights, gradients, AdamW's two moments) = 58 GiB per GPU over 8 GPUs, plus ~17 GiB of
# temporaries: more than an 80 GB card holds. FSDP2's CPU offload policy keeps that state in (pinned) host memory,
# runs AdamW on the CPU and streams each layer's shard to the GPU when it is used; each vLLM engine spans 4 GPUs.
# On 8 x H200 or two 8 x 80 GB nodes append actor_rollout_ref.actor.fsdp_config.offload_policy=false (README).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MOE_MEMORY=(
  actor_rollout_ref.actor.fsdp_config.offload_policy=true
  # Used when offload_policy=false (the engine ignores it under the policy): AdamW's moments leave the GPU while
  # vLLM generates, so that they do not share the card with its KV cache.
  actor_rollout_ref.actor.fsdp_config.optimizer_offload=true
)
run_recipe tor qwen3_vl_30b_a3b_geo3k_dapo_tor "DAPO + ToR" "$QWEN3_VL_30B_A3B" geo3k \
  "${DAPO[@]}" "${TOR[@]}" "${MOE_MEMORY[@]}" "$@"
