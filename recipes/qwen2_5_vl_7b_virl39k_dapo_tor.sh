#!/usr/bin/env bash
# DAPO + ToR trained on ViRL39K (38,870 items) with Qwen2.5-VL-7B-Instruct; validation on Geometry3K test.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# Every ViRL39K row is trained on: at 2,048 tokens veRL's filter would drop the rows whose image has more than
# ≈ 1.45 MP; 8,192 fit one image at the 4,194,304-pixel maximum (≈ 5,350 tokens) and its question. What the filter
# still removes is counted in run.json (recipes/README.md, "Every difference from the paper": Prompts).
PROMPT_LENGTH=8192
run_recipe tor qwen2_5_vl_7b_virl39k_dapo_tor "DAPO + ToR" "$QWEN25_VL_7B" virl39k "${DAPO[@]}" "${TOR[@]}" "$@"
