#!/usr/bin/env bash
# Motivation ablation: GRPO updating only perception tokens that are not also reasoning tokens
# (gamma_r = gamma_o = 0, gamma_p = 1; Eq. 9 gives tokens in both sets gamma_r).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_recipe tor qwen2_5_vl_7b_geo3k_grpo_perception_only "GRPO, perception tokens only" "$QWEN25_VL_7B" geo3k \
  "${GRPO[@]}" "${TOR[@]}" tor.reasoning_weight=0.0 tor.perception_weight=1.0 tor.other_weight=0.0 "$@"
