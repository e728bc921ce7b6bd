#!/usr/bin/env bash
# Table 4 setting, "DAPO", with Qwen2.5-VL-3B-Instruct on Geometry3K.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_recipe ppo qwen2_5_vl_3b_geo3k_dapo "DAPO" "$QWEN25_VL_3B" geo3k "${DAPO[@]}" "$@"
