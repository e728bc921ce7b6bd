#!/usr/bin/env bash
# Paper Table 4, "GRPO + ToR": Qwen2.5-VL-7B-Instruct on Geometry3K, GRPO with ToR token weights.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_recipe tor qwen2_5_vl_7b_geo3k_grpo_tor "GRPO + ToR" "$QWEN25_VL_7B" geo3k "${GRPO[@]}" "${TOR[@]}" "$@"
