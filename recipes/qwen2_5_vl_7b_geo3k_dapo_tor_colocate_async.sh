#!/usr/bin/env bash
# "DAPO + ToR" (Table 4) with Qwen2.5-VL-7B-Instruct on Geometry3K in veRL's colocate_async trainer mode, the mode
# that suits one 8-GPU node: generation of the next batch goes on while the current one trains (one batch ahead),
# is aborted at each weight update and resumed after it (partial rollouts). ToR selects over each step's batch and
# scores it with the actor's weights at the old-log-prob forward (README.md, "Trainer modes").
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_recipe tor qwen2_5_vl_7b_geo3k_dapo_tor_colocate_async "DAPO + ToR, colocate_async" "$QWEN25_VL_7B" geo3k \
  "${DAPO[@]}" "${TOR[@]}" "${COLOCATE_ASYNC[@]}" "$@"
