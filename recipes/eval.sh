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
# SMOKE=1: the tiny model (or a smoke run's checkpoint) on the synthetic validation set, on the CPU.
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

# resolve_target TARGET: sets MODEL (what to load), RUN_DIR and TAG; merges a checkpoint unless DRY_RUN=1.
resolve_target() {
  local target=${1%/} actor=""
  if [[ -e $target ]]; then target=$(realpath "$target"); fi
  if [[ -d $target/actor ]]; then actor=$target/actor; elif [[ -d $target && $(basename "$target") == actor ]]; then
    actor=$target
  fi
  if [[ -z $actor ]]; then
    MODEL=$target TAG=model LABEL=$(basename "$target")
    RUN_DIR="$OUTPUT_DIR/${EXPERIMENT_NAME:-eval_$(basename "$target")}"
    return
  fi
  local step_dir
  step_dir=$(dirname "$actor")
  MODEL=$actor/merged_hf TAG=$(basename "$step_dir")
  # A recipe's checkpoint lives in <run>/checkpoints/global_step_N: evaluations go next to its training metrics.
  RUN_DIR=$(dirname "$step_dir")
  if [[ $(basename "$RUN_DIR") == checkpoints ]]; then RUN_DIR=$(dirname "$RUN_DIR"); fi
  LABEL=$(basename "$RUN_DIR")
  local merge=("$PYTHON" -m verl.model_merger merge --backend fsdp --local_dir "$actor" --target_dir "$MODEL")
  if [[ $DRY_RUN == 1 ]]; then
    printf '%q ' "${merge[@]}"
    printf '\n'
  elif [[ ! -f $MODEL/config.json ]]; then
    "${merge[@]}"
  fi
}

# evaluate MODE [OVERRIDE...]: one validation-only run.
evaluate() {
  local mode=$1
  shift
  mode_overrides "$mode"
  local name="eval_${TAG}_${mode}"
  local eval_dir="$RUN_DIR/eval/${TAG}_${mode}" files
  if [[ $SMOKE == 1 ]]; then
    base_smoke "$eval_dir"
    files="$eval_dir/smoke_inputs/data/val.parquet"
    # The smoke run's own model unless a checkpoint or model was given.
    if [[ -n $MODEL ]]; then BASE+=(actor_rollout_ref.model.path="$MODEL"); fi
  else
    files=$(IFS=,; echo "${EVAL_FILES[*]}")
    base_gpu "$MODEL" "${EVAL_FILES[0]}" "[$files]" "$EVAL_PROMPT_LENGTH"
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

# Before anything (the merge included): nothing is trained, one merged bf16 copy is written.
if [[ $SMOKE == 1 ]]; then
  preflight
else
  preflight --params-b "${PARAMS_B[$QWEN25_VL_7B]}" --checkpoints 0 --merged 1 --data "${EVAL_FILES[@]}" \
    --max-images "$IMAGES_PER_PROMPT"
fi
if [[ $SMOKE == 1 && $# -eq 0 ]]; then
  MODEL="" TAG=model LABEL=tiny RUN_DIR="$OUTPUT_DIR/${EXPERIMENT_NAME:-eval_smoke}"
else
  resolve_target "${1:?usage: bash recipes/eval.sh CHECKPOINT_OR_MODEL [OVERRIDE...]}"
  shift
fi
case $EVAL_MODE in
  both) evaluate greedy "$@" && evaluate avg8 "$@" ;;
  *) evaluate "$EVAL_MODE" "$@" ;;
esac
