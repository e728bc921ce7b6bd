#!/usr/bin/env bash
# Table 4 setting, "DAPO + ToR", with Qwen3.5-9B (hybrid linear/full attention) on Geometry3K.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_recipe tor qwen3_5_9b_geo3k_dapo_tor "DAPO + ToR" "$QWEN35_9B" geo3k "${DAPO[@]}" "${TOR[@]}" "$@"
