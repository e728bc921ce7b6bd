#!/usr/bin/env bash
# Motivation ablation: GRPO updating every perception token (all of T_p, weight 1, also those in T_r:
# gamma_p = overlap = 1, gamma_r = gamma_o = 0; docs/methods.md says why this reading).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_recipe tor qwen2_5_vl_7b_geo3k_grpo_perception_only "GRPO, perception tokens only" "$QWEN25_VL_7B" geo3k \
  "${GRPO[@]}" "${TOR[@]}" tor.reasoning_weight=0.0 tor.perception_weight=1.0 tor.overlap_weight=1.0 tor.other_weight=0.0 "$@"
