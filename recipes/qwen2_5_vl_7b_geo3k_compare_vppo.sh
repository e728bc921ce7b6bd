#!/usr/bin/env bash
# Controlled comparison of token-credit methods, arm tor.method=vppo: Qwen2.5-VL-7B-Instruct, GRPO on Geometry3K; the other
# qwen2_5_vl_7b_geo3k_compare_*.sh scripts differ from this one only in the method (docs/methods.md).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
compare_method qwen2_5_vl_7b_geo3k_compare_vppo "$QWEN25_VL_7B" vppo "$@"
