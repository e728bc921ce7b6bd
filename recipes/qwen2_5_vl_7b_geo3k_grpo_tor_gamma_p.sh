#!/usr/bin/env bash
# Perception-weight sweep: GRPO + ToR on Qwen2.5-VL-7B-Instruct / Geometry3K with gamma_p = GAMMA_P, one run per
# value: bash recipes/qwen2_5_vl_7b_geo3k_grpo_tor_gamma_p.sh GAMMA_P [OVERRIDE...], GAMMA_P one of the paper's
# 0.1 0.25 0.5 1.0 1.5 (0.5 is the GRPO + ToR run of Table 4).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
gamma_p="${1:-}"
case $gamma_p in
  0.1 | 0.25 | 0.5 | 1.0 | 1.5) shift ;;
  *) echo "usage: bash $0 GAMMA_P [OVERRIDE...] with GAMMA_P one of 0.1 0.25 0.5 1.0 1.5" >&2 && exit 2 ;;
esac
run_recipe tor "qwen2_5_vl_7b_geo3k_grpo_tor_gamma_p$gamma_p" "GRPO + ToR, gamma_p = $gamma_p" "$QWEN25_VL_7B" geo3k \
  "${GRPO[@]}" "${TOR[@]}" tor.perception_weight="$gamma_p" "$@"
