#!/usr/bin/env bash
# Evaluate a model or a recipe's checkpoint on the paper's five benchmarks with veRL's validation-only mode and
# verl_tor.eval.rewards (rule-based grading; the paper used an LLM judge, see recipes/README.md).
#
#   bash recipes/eval.sh CHECKPOINT_OR_MODEL [OVERRIDE...]
#
# CHECKPOINT_OR_MODEL: a Hugging Face model (hub id or folder), or a checkpoint of a recipe
#   (OUTPUT_DIR/<run>/checkpoints/global_step_N, or its actor/ folder), which is first merged to Hugging Face
#   format with veRL's model merger into global_step_N/actor/merged_hf (kept for later evaluations).
# EVAL_MODE: greedy (default; the paper's protocol: one greedy answer), avg8 (8 samples at temperature 1.0,
#   the protocol of VPPO and related work), or both (two runs).
# Results: <run>/eval/<global_step_N|model>_<mode>/ (metrics, generations, run.json), which
#   `python -m verl_tor.eval.report <run>` reads. A Hugging Face model goes to OUTPUT_DIR/eval_<model name>/.
# RECIPE_MODEL: the model-table row (recipes/common.sh) whose family and size the evaluation is set up for (pixel
#   range, GPUs per vLLM engine, disk estimate). Found by itself for a table model or a recipe's checkpoint (its
#   run.json); needed for anything else, e.g. RECIPE_MODEL=Qwen/Qwen2.5-VL-7B-Instruct for a local copy of it.
# SMOKE=1: a tiny model of that family (or a smoke run's checkpoint) on the synthetic validation set, on the CPU.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

EVAL_MODE="${EVAL_MODE:-greedy}"
# The benchmarks of the paper's Table 4 as data_prep writes them (make data-eval).
EVAL_FILES=(
  "$DATA_ROOT/mathverse/testmini.parquet"
  "$DATA_ROOT/mathvision/test.parquet"
  "$DATA_ROOT/mathvista/testmini.parquet"
  "$DATA_ROOT/wemath/testmini.parquet"
  "$DATA_ROOT/hallusionbench/image.parquet"
)

# Benchmark images up to 4,194,304 pixels take up to 5,350 tokens: prompts may be 8,192 tokens (longer ones are
# dropped by veRL and counted in the evaluation's run.json).
EVAL_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-8192}

# mode_overrides MODE: fills MODE with the validation sampling of greedy or avg8, in batches of
# VAL_SAMPLES_PER_BATCH samples (512 prompts greedy, 64 prompts x 8 samples avg@8).
mode_overrides() {
  case $1 in
    greedy) MODE=(actor_rollout_ref.rollout.val_kwargs.{do_sample=false,temperature=0,top_p=1.0,n=1}) ;;
    avg8) MODE=(actor_rollout_ref.rollout.val_kwargs.{do_sample=true,temperature=1.0,top_p=1.0,n=8}) ;;
    *) echo "EVAL_MODE must be greedy, avg8 or both, got '$1'" >&2 && exit 2 ;;
  esac
  local n=${MODE[-1]##*=}
  MODE+=(data.val_batch_size=$((VAL_SAMPLES_PER_BATCH / n)))
}

# resolve_target TARGET: sets MODEL (what to load), ROW (its model-table row), RUN_DIR, TAG and, for a checkpoint,
# MERGE (veRL's model merger command that writes MODEL).
resolve_target() {
  MERGE=()
  local target=${1%/} actor=""
  if [[ -e $target ]]; then target=$(realpath "$target"); fi
  if [[ -d $target/actor ]]; then actor=$target/actor; elif [[ -d $target && $(basename "$target") == actor ]]; then
    actor=$target
  fi
  if [[ -z $actor ]]; then
    MODEL=$target TAG=model LABEL=$(basename "$target")
    RUN_DIR="$OUTPUT_DIR/${EXPERIMENT_NAME:-eval_$(basename "$target")}"
    table_row "${RECIPE_MODEL:-$target}"
    return
  fi
  local step_dir
  step_dir=$(dirname "$actor")
  MODEL=$actor/merged_hf TAG=$(basename "$step_dir")
  # A recipe's checkpoint lives in <run>/checkpoints/global_step_N: evaluations go next to its training metrics.
  RUN_DIR=$(dirname "$step_dir")
  if [[ $(basename "$RUN_DIR") == checkpoints ]]; then RUN_DIR=$(dirname "$RUN_DIR"); fi
  LABEL=$(basename "$RUN_DIR")
  table_row "${RECIPE_MODEL:-$(run_json_value "$RUN_DIR/run.json" recipe_model)}"
  MERGE=("$PYTHON" -m verl.model_merger merge --backend fsdp --local_dir "$actor" --target_dir "$MODEL")
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

# table_row MODEL: sets ROW to MODEL if it is a row of the model table, else stops naming RECIPE_MODEL.
table_row() {
  if [[ -z ${MODEL_FAMILY[$1]+set} ]]; then
    echo "eval.sh: '$1' is not in the model table of recipes/common.sh; set RECIPE_MODEL to the row it is a copy" \
      "or checkpoint of: ${!MODEL_FAMILY[*]}" >&2
    exit 2
  fi
  ROW=$1
}

# run_json_value FILE KEY: KEY of a recipe's run.json (empty when there is none).
run_json_value() {
  "$PYTHON" -c 'import json, os, sys
if os.path.exists(sys.argv[1]):
    print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$1" "$2"
}

# evaluate MODE [OVERRIDE...]: one validation-only run.
evaluate() {
  local mode=$1
  shift
  mode_overrides "$mode"
  local name="eval_${TAG}_${mode}"
  local eval_dir="$RUN_DIR/eval/${TAG}_${mode}" files
  if [[ $SMOKE == 1 ]]; then
    base_smoke "$eval_dir" "$ROW"
    files="$eval_dir/smoke_inputs/data/val.parquet"
    # The smoke run's own model unless a checkpoint or model was given.
    if [[ -n $MODEL ]]; then BASE+=(actor_rollout_ref.model.path="$MODEL"); fi
  else
    files=$(IFS=,; echo "${EVAL_FILES[*]}")
    base_gpu "$ROW" "$MODEL" "${EVAL_FILES[0]}" "[$files]" "$EVAL_PROMPT_LENGTH"
    # The training set is only built, never used.
    BASE+=(data.train_max_samples=512)
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
  # val_files lets `verl_tor.eval.report --judge-url` find each dumped response's benchmark row.
  local info
  info=$(run_info kind eval experiment "$name" label "$LABEL" mode "$mode" step "$TAG" \
    model "$MODEL" smoke "$SMOKE" val_files "$files")
  launch "$eval_dir" "$info" "$PYTHON" -m verl.trainer.main_ppo --config-name=ppo_trainer \
    "${BASE[@]}" "${RUN[@]}" "${PAPER[@]}" "${eval_only[@]}" "${MODE[@]}" "$@"
}

if [[ $SMOKE == 1 && $# -eq 0 ]]; then
  MODEL="" TAG=model LABEL=tiny RUN_DIR="$OUTPUT_DIR/${EXPERIMENT_NAME:-eval_smoke}" MERGE=()
  table_row "${RECIPE_MODEL:-$QWEN25_VL_7B}"
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
case $EVAL_MODE in
  both) evaluate greedy "$@" && evaluate avg8 "$@" ;;
  *) evaluate "$EVAL_MODE" "$@" ;;
esac
