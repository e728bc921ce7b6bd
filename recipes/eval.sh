#!/usr/bin/env bash
# Evaluate a model or a recipe's checkpoint on the paper's five benchmarks with veRL's validation-only mode
# (docs/evaluation.md: protocols, grading, time per protocol, the paired comparison).
#
#   bash recipes/eval.sh CHECKPOINT_OR_MODEL [OVERRIDE...]
#
# CHECKPOINT_OR_MODEL: a Hugging Face model (hub id or folder), or a checkpoint of a recipe
#   (OUTPUT_DIR/<run>/checkpoints/global_step_N, or its actor/ folder), which is first merged to Hugging Face
#   format with veRL's model merger into global_step_N/actor/merged_hf (kept for later evaluations).
# EVAL_PROTOCOL: tor (default; what ToR reports: the NoisyRollout harness's greedy decoding, 262,144-1,000,000
#   image pixels, 2,048 response tokens in an 8,192-token context and system prompt; its LLM grading is applied by
#   `python -m verl_tor.eval.report --judge-url`), avg8 (what VPPO, PAPO, PGPO report: 8 samples at temperature
#   1.0, rule-based grading), or both (two runs).
# IMAGE: present (default) or removed (every image deleted from the prompt: how much the model looks).
# Results: <run>/eval/<global_step_N|model>_<protocol>[_noimage]/ (metrics, generations, run.json), which
#   `python -m verl_tor.eval.report <run>` and `python -m verl_tor.eval.compare` read. A Hugging Face model goes to
#   OUTPUT_DIR/eval_<model name>/.
# RECIPE_MODEL: the model-table row (recipes/common.sh) the evaluated model is a copy or checkpoint of; its family and
#   size set the pixel range, the GPUs per vLLM engine and the disk estimate. Found by itself for a model of the
#   table and for a recipe's checkpoint (its run.json); needed for anything else, e.g.
#   RECIPE_MODEL=Qwen/Qwen2.5-VL-7B-Instruct bash recipes/eval.sh /models/my-qwen2.5-vl-7b-copy
# EVAL_BATCH_SAMPLES: samples per validation batch (default 2,048; each holds its samples' pixel values in host
#   memory until it ends, docs/evaluation.md).
# SMOKE=1: a tiny model of that family (or a smoke run's checkpoint) on the synthetic validation set, on the CPU.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ -n ${EVAL_MODE:-} ]]; then
  echo "eval.sh: EVAL_MODE is now EVAL_PROTOCOL: tor (was greedy), avg8 or both" >&2
  exit 2
fi
EVAL_PROTOCOL="${EVAL_PROTOCOL:-tor}"
case $EVAL_PROTOCOL in
  tor | avg8 | both) ;;
  *) echo "eval.sh: EVAL_PROTOCOL must be tor, avg8 or both, got '$EVAL_PROTOCOL'" >&2 && exit 2 ;;
esac
IMAGE="${IMAGE:-present}"
EVAL_BATCH_SAMPLES="${EVAL_BATCH_SAMPLES:-2048}"
case $IMAGE in
  present) NOIMAGE="" ;;
  removed) NOIMAGE=_noimage ;;
  *) echo "eval.sh: IMAGE must be present or removed, got '$IMAGE'" >&2 && exit 2 ;;
esac
# The benchmarks of the paper's Table 4 as data_prep writes them (make data-eval).
EVAL_FILES=(
  "$DATA_ROOT/mathverse/testmini.parquet"
  "$DATA_ROOT/mathvision/test.parquet"
  "$DATA_ROOT/mathvista/testmini.parquet"
  "$DATA_ROOT/wemath/testmini.parquet"
  "$DATA_ROOT/hallusionbench/image.parquet"
)
# The harness's pixel range and context (Qwen2.5-VL pixels; other families get the same token counts).
HARNESS_MAX_PIXELS=1000000
HARNESS_CONTEXT=8192

# protocol_settings PROTOCOL: fills MODE (validation sampling and batches), PROMPT_BUDGET (prompt tokens, images
# included), MAX_PIXELS (the largest image, in Qwen2.5-VL pixels: base_gpu scales it per family) and DATASET
# (data.custom_cls).
# Batches of EVAL_BATCH_SAMPLES samples keep the vLLM engines busy past the longest response of each batch; each
# holds its samples' float32 pixel values in host memory until it ends (≤ 24 MB a sample at 1,000,000 pixels,
# ≤ 100 MB at 4,194,304; docs/evaluation.md).
protocol_settings() {
  local n suffix=""
  if [[ $IMAGE == removed ]]; then suffix=ImageRemoved; fi
  case $1 in
    tor)
      MODE=(actor_rollout_ref.rollout.val_kwargs.{do_sample=false,temperature=0,top_p=1.0,n=1})
      PROMPT_BUDGET=${MAX_PROMPT_LENGTH:-$((HARNESS_CONTEXT - RESPONSE_LENGTH))}
      MAX_PIXELS=$HARNESS_MAX_PIXELS n=1
      DATASET=(data.custom_cls.path=pkg://verl_tor.eval.prompts "data.custom_cls.name=HarnessPrompt${suffix}Dataset")
      ;;
    avg8)
      MODE=(actor_rollout_ref.rollout.val_kwargs.{do_sample=true,temperature=1.0,top_p=1.0,n=8})
      # Benchmark images up to 4,194,304 pixels take up to 5,350 tokens.
      PROMPT_BUDGET=${MAX_PROMPT_LENGTH:-8192} MAX_PIXELS=$PAPER_MAX_PIXELS n=8
      DATASET=()
      if [[ -n $suffix ]]; then
        DATASET=(data.custom_cls.path=pkg://verl_tor.eval.prompts data.custom_cls.name=ImageRemovedDataset)
      fi
      ;;
  esac
  MODE+=(data.val_batch_size=$((EVAL_BATCH_SAMPLES / n)))
}

# resolve_target TARGET: sets MODEL (what to load), ROW (its model-table row), RUN_DIR, TAG and, for a checkpoint,
# MERGE (veRL's model merger command that writes MODEL).
resolve_target() {
  MERGE=()
  local target=${1%/} actor=""
  # A path (not a hub id such as Qwen/Qwen2.5-VL-7B-Instruct) must exist.
  if [[ ! -e $target && ($target == [/.~]* || $target == */*/*) ]]; then
    echo "eval.sh: no such checkpoint or model folder: $target" >&2
    exit 2
  fi
  if [[ -e $target ]]; then target=$(realpath "$target"); fi
  if [[ -d $target/actor ]]; then actor=$target/actor; elif [[ -d $target && $(basename "$target") == actor ]]; then
    actor=$target
  fi
  if [[ -z $actor ]]; then
    MODEL=$target TAG=model LABEL=$(basename "$target")
    RUN_DIR="$OUTPUT_DIR/${EXPERIMENT_NAME:-eval_$(basename "$target")}"
    table_row "${RECIPE_MODEL:-$target}" "$target"
    return
  fi
  local step_dir
  step_dir=$(dirname "$actor")
  MODEL=$actor/merged_hf TAG=$(basename "$step_dir")
  # A recipe's checkpoint lives in <run>/checkpoints/global_step_N: evaluations go next to its training metrics.
  RUN_DIR=$(dirname "$step_dir")
  if [[ $(basename "$RUN_DIR") == checkpoints ]]; then RUN_DIR=$(dirname "$RUN_DIR"); fi
  LABEL=$(basename "$RUN_DIR")
  table_row "${RECIPE_MODEL:-$(run_json_value "$RUN_DIR/run.json" recipe_model)}" "$target"
  MERGE=("$PYTHON" -m verl.model_merger merge --backend fsdp --local_dir "$actor" --target_dir "$MODEL")
}

# table_row ROW TARGET: sets ROW if it is a row of the model table, else stops, saying whether TARGET exists.
table_row() {
  if [[ -n ${MODEL_FAMILY[$1]+set} ]]; then
    ROW=$1
    return
  fi
  if [[ -e $2 ]]; then
    echo "eval.sh: '$1' is not in the model table of recipes/common.sh; set RECIPE_MODEL to the row $2 is a copy" \
      "or checkpoint of: ${!MODEL_FAMILY[*]}" >&2
  else
    echo "eval.sh: no such checkpoint or model folder: $2; as a hub id it is no model of the table in" \
      "recipes/common.sh (${!MODEL_FAMILY[*]}): set RECIPE_MODEL to the row it is a copy of" >&2
  fi
  exit 2
}

# run_json_value FILE KEY: KEY of a recipe's run.json (empty when there is none).
run_json_value() {
  "$PYTHON" -c 'import json, os, sys
if os.path.exists(sys.argv[1]):
    print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$1" "$2"
}

# merge_checkpoint: runs MERGE (prints it with DRY_RUN=1) unless there is nothing to merge or it was merged before.
merge_checkpoint() {
  if ((${#MERGE[@]} == 0)); then return 0; fi
  if [[ $DRY_RUN == 1 ]]; then
    printf '%q ' "${MERGE[@]}"
    printf '\n'
  elif [[ ! -f $MODEL/config.json ]]; then
    "${MERGE[@]}"
  fi
}

# evaluate PROTOCOL [OVERRIDE...]: one validation-only run.
evaluate() {
  local protocol=$1
  shift
  protocol_settings "$protocol"
  local name="eval_${TAG}_${protocol}${NOIMAGE}"
  local eval_dir="$RUN_DIR/eval/${TAG}_${protocol}${NOIMAGE}" files engine=()
  if [[ $SMOKE == 1 ]]; then
    base_smoke "$eval_dir" "$ROW"
    files="$eval_dir/smoke_inputs/data/val.parquet"
    # The smoke run's own model unless a checkpoint or model was given; graded by the benchmarks' reward (its
    # dump names each response's row), with room for the harness's system prompt in the tiny vocabulary.
    if [[ -n $MODEL ]]; then BASE+=(actor_rollout_ref.model.path="$MODEL"); fi
    BASE+=(reward.custom_reward_function.path=pkg://verl_tor.eval.rewards data.max_prompt_length=512)
  else
    files=$(IFS=,; echo "${EVAL_FILES[*]}")
    # base_gpu derives the pixel range from PAPER_MAX_PIXELS: the protocol's, for this run only.
    PAPER_MAX_PIXELS=$MAX_PIXELS base_gpu "$ROW" "$MODEL" "${EVAL_FILES[0]}" "[$files]" "$PROMPT_BUDGET"
    # The training set is only built, never used.
    BASE+=(data.train_max_samples=512)
    # Inference only: one vLLM engine per GPU where the model fits, most of the memory for its KV cache (the FSDP
    # copy, needed only to load the engines' weights, waits in host memory).
    engine=(
      actor_rollout_ref.rollout.tensor_model_parallel_size="${EVAL_ROLLOUT_TP[$ROW]}"
      actor_rollout_ref.rollout.gpu_memory_utilization=0.85
      actor_rollout_ref.actor.fsdp_config.param_offload=true
    )
  fi
  run_overrides "$eval_dir" "$name"
  local eval_only=(
    trainer.val_only=true
    trainer.val_before_train=true
    trainer.validation_data_dir="$eval_dir/generations"
    # Nothing is trained: no reference model, nothing saved.
    actor_rollout_ref.actor.use_kl_loss=false
    trainer.save_freq=-1
  )
  # val_files lets `verl_tor.eval.report --judge-url` grade each dumped response against its own benchmark row.
  local info
  info=$(run_info kind eval experiment "$name" label "$LABEL" protocol "$protocol" image "$IMAGE" step "$TAG" \
    model "$MODEL" smoke "$SMOKE" val_files "$files")
  launch "$eval_dir" "$info" "$PYTHON" -m verl.trainer.main_ppo --config-name=ppo_trainer \
    "${BASE[@]}" "${RUN[@]}" "${PAPER[@]}" "${eval_only[@]}" "${engine[@]}" "${MODE[@]}" "${DATASET[@]}" "$@"
}

# GPUs per vLLM engine for inference: every model but the 30B MoE (62 GB of bf16 weights) fits one GPU.
declare -A EVAL_ROLLOUT_TP=(
  ["$QWEN25_VL_7B"]=1 ["$QWEN25_VL_3B"]=1 ["$QWEN3_VL_8B"]=1 ["$QWEN3_VL_4B"]=1 ["$QWEN3_VL_30B_A3B"]=2
  ["$QWEN35_9B"]=1
)

if [[ $SMOKE == 1 && $# -eq 0 ]]; then
  MODEL="" TAG=model LABEL=tiny RUN_DIR="$OUTPUT_DIR/${EXPERIMENT_NAME:-eval_smoke}" MERGE=()
  table_row "${RECIPE_MODEL:-$QWEN25_VL_7B}" "${RECIPE_MODEL:-$QWEN25_VL_7B}"
else
  resolve_target "${1:?usage: bash recipes/eval.sh CHECKPOINT_OR_MODEL [OVERRIDE...]}"
  shift
fi
# Before anything is written (the merge included): nothing is trained, one merged bf16 copy is written.
if [[ $SMOKE == 1 ]]; then
  preflight
else
  preflight --params-b "${PARAMS_B[$ROW]}" --checkpoints 0 --merged 1 --data "${EVAL_FILES[@]}" \
    --max-images "$IMAGES_PER_PROMPT"
fi
merge_checkpoint
case $EVAL_PROTOCOL in
  both) evaluate tor "$@" && evaluate avg8 "$@" ;;
  *) evaluate "$EVAL_PROTOCOL" "$@" ;;
esac
