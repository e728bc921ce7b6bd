#!/usr/bin/env bash
# Table 4 setting, "GRPO + ToR", with Qwen3-VL-4B-Instruct on Geometry3K (Qwen3-VL pixel range).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_recipe tor qwen3_vl_4b_geo3k_grpo_tor "GRPO + ToR" "$QWEN3_VL_4B" geo3k "${GRPO[@]}" "${TOR[@]}" "$@"
