#!/usr/bin/env bash
# Controlled comparison of token-credit methods, arm tor.method=pgpo: Qwen3-VL-4B-Instruct, GRPO on Geometry3K; the other
# qwen3_vl_4b_geo3k_compare_*.sh scripts differ from this one only in the method (docs/methods.md).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
compare_method qwen3_vl_4b_geo3k_compare_pgpo "$QWEN3_VL_4B" pgpo "$@"
