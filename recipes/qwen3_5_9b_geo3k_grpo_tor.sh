#!/usr/bin/env bash
# Table 4 setting, "GRPO + ToR", with Qwen3.5-9B (hybrid linear/full attention) on Geometry3K.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_recipe tor qwen3_5_9b_geo3k_grpo_tor "GRPO + ToR" "$QWEN35_9B" geo3k "${GRPO[@]}" "${TOR[@]}" "$@"
