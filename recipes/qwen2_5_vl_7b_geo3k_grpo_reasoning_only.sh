#!/usr/bin/env bash
# Motivation ablation: GRPO updating only the top-30% truncated-entropy tokens (gamma_p = gamma_o = 0).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_recipe tor qwen2_5_vl_7b_geo3k_grpo_reasoning_only "GRPO, reasoning tokens only" "$QWEN25_VL_7B" geo3k \
  "${GRPO[@]}" "${TOR[@]}" tor.perception_weight=0.0 tor.other_weight=0.0 "$@"
