#!/usr/bin/env bash
# DAPO + ToR trained on ViRL39K (38,870 items) with Qwen2.5-VL-7B-Instruct; validation on Geometry3K test.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_recipe tor qwen2_5_vl_7b_virl39k_dapo_tor "DAPO + ToR" "$QWEN25_VL_7B" virl39k "${DAPO[@]}" "${TOR[@]}" "$@"
