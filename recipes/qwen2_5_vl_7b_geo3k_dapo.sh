#!/usr/bin/env bash
# Paper Table 4, "DAPO": Qwen2.5-VL-7B-Instruct on Geometry3K, stock veRL DAPO (the baseline).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_recipe ppo qwen2_5_vl_7b_geo3k_dapo "DAPO" "$QWEN25_VL_7B" geo3k "${DAPO[@]}" "$@"
