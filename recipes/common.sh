# shellcheck shell=bash disable=SC2034
# (SC2034: the arrays and model names below are used by the recipes that source this file.)
# Sourced by every recipe: the paper's setting, the GPU infrastructure, the SMOKE=1 swap and the launcher.
#
# Final command (Hydra: a later override wins):
#   python -m verl.trainer.main_ppo --config-path=… --config-name=…  BASE  RUN  PAPER  <ALGORITHM, tor.*>  "$@"
#   BASE   GPU: model, data, reward, engine/memory, rollout (vLLM), the paper's sizes   (base_gpu)
#          SMOKE=1: verl_tor.testing.cpu_overrides (tiny model, synthetic data, colour reward, CPU, hf, 1 step)
#   RUN    logger, metrics file, run.json, checkpoints, validation cadence                (run_overrides)
#   PAPER  the paper's optimisation setting shared by every arm, kept under SMOKE=1       (PAPER below)
# So SMOKE=1 swaps only model, data, reward, device, rollout backend, sizes and step count; every algorithm and
# ToR override of the recipe is the one the GPU run uses. See recipes/README.md for every choice and its reason.
#
# Environment knobs: MODEL_PATH DATA_ROOT N_GPUS_PER_NODE NNODES LOGGER EXPERIMENT_NAME OUTPUT_DIR, and
#   SMOKE=1    one step on the CPU with the tiny model (no GPU, no downloads)
#   DRY_RUN=1  print the command (with its environment) instead of running it
#   PREFLIGHT=0  skip python -m verl_tor.launch.preflight (driver, GPUs, vLLM, flash-attn, data, disk), run first
#   MAX_PROMPT_LENGTH  prompt budget in tokens, images included (default: the recipe's, 2048; ViRL39K 8192)
#   MAX_TOKEN_LEN_PER_GPU  tokens per micro-batch and GPU (default: the recipe's, 16384; at least prompt + response)
#   ROLLOUT_NNODES PARAMETER_SYNC_STEP  the separate_async recipes' rollout nodes (2) and local updates per step (4)
#   FORWARD_ENV  names of variables forwarded to every Ray process (default: WANDB_API_KEY HF_TOKEN HF_HOME)
#   PYTHON     the interpreter (default: python)

PYTHON="${PYTHON:-python}"
SMOKE="${SMOKE:-0}"
DRY_RUN="${DRY_RUN:-0}"
PREFLIGHT="${PREFLIGHT:-1}"
# The TaskRunner and workers may run on other nodes, where Ray processes have the environment of that node's
# `ray start`: these variables go to them by name (verl_tor/launch/ray_env.py), so no value is written into command.sh.
# Per-node settings (NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME, NCCL_IB_HCA, ...) are refused: set them on each node
# before its `ray start` (docs/gpu-install.md, "Multi-node").
FORWARD_ENV="${FORWARD_ENV:-WANDB_API_KEY HF_TOKEN HF_HOME}"
# Absolute paths: Ray actors do not necessarily share the launching shell's working directory.
DATA_ROOT=$(realpath -m "${DATA_ROOT:-$HOME/data/verl_tor}")
N_GPUS_PER_NODE="${N_GPUS_PER_NODE:-8}"
NNODES="${NNODES:-1}"
LOGGER="${LOGGER:-console}"
OUTPUT_DIR=$(realpath -m "${OUTPUT_DIR:-$HOME/verl_tor_runs}")

# The models the recipes train, one row each: MODEL_FAMILY (verl_tor.testing.tiny_model --family: what SMOKE=1
# swaps in, and the image patch size), parameters in billions (the preflight's disk estimate: a checkpoint with
# optimizer state is 12 bytes each), GPUs per vLLM engine, and the GPUs its recipes' memory settings were sized for
# (recipes/README.md, "Memory"; recorded in run.json).
QWEN25_VL_7B=Qwen/Qwen2.5-VL-7B-Instruct
QWEN25_VL_3B=Qwen/Qwen2.5-VL-3B-Instruct
QWEN3_VL_8B=Qwen/Qwen3-VL-8B-Instruct
QWEN3_VL_4B=Qwen/Qwen3-VL-4B-Instruct
QWEN3_VL_30B_A3B=Qwen/Qwen3-VL-30B-A3B-Instruct
QWEN35_9B=Qwen/Qwen3.5-9B
declare -A MODEL_FAMILY=(
  ["$QWEN25_VL_7B"]=qwen2_5_vl ["$QWEN25_VL_3B"]=qwen2_5_vl
  ["$QWEN3_VL_8B"]=qwen3_vl ["$QWEN3_VL_4B"]=qwen3_vl ["$QWEN3_VL_30B_A3B"]=qwen3_vl_moe
  ["$QWEN35_9B"]=qwen3_5
)
declare -A PARAMS_B=(
  ["$QWEN25_VL_7B"]=8.29 ["$QWEN25_VL_3B"]=3.75
  ["$QWEN3_VL_8B"]=8.77 ["$QWEN3_VL_4B"]=4.44 ["$QWEN3_VL_30B_A3B"]=31.07
  ["$QWEN35_9B"]=9.65
)
declare -A SIZED_FOR=(
  ["$QWEN25_VL_7B"]="8 x 80 GB" ["$QWEN25_VL_3B"]="8 x 80 GB"
  ["$QWEN3_VL_8B"]="8 x 80 GB" ["$QWEN3_VL_4B"]="8 x 80 GB"
  ["$QWEN3_VL_30B_A3B"]="8 x 80 GB, FSDP2 CPU offload policy, >= 0.6 TB host memory"
  ["$QWEN35_9B"]="8 x 80 GB"
)
declare -A ROLLOUT_TP=(
  ["$QWEN25_VL_7B"]=2 ["$QWEN25_VL_3B"]=1
  ["$QWEN3_VL_8B"]=2 ["$QWEN3_VL_4B"]=1 ["$QWEN3_VL_30B_A3B"]=4
  ["$QWEN35_9B"]=2
)
# Pixels per visual token: Qwen2.5-VL 28 x 28 (patch 14, merge 2), Qwen3-VL and Qwen3.5 32 x 32 (patch 16, merge 2).
# The paper's 262,144-4,194,304 pixels are 334-5,350 Qwen2.5-VL tokens; the other families get the pixel range of
# the same token counts, scaled by their pixels per token (recipes/README.md, "Other model families").
declare -A PIXELS_PER_TOKEN=([qwen2_5_vl]=784 [qwen3_vl]=1024 [qwen3_vl_moe]=1024 [qwen3_5]=1024)
PAPER_MIN_PIXELS=262144
PAPER_MAX_PIXELS=4194304

# Token budgets: a recipe may set PROMPT_LENGTH after sourcing this file (MAX_PROMPT_LENGTH overrides it). Prompts
# count their image tokens (a 4,194,304-pixel image is ≈ 5,350); longer ones are dropped by veRL and counted in
# run.json (verl_tor.launch.prompt_filter). Change the budget here, not with data.max_prompt_length: vLLM's context is
# derived from it.
PROMPT_LENGTH=2048
RESPONSE_LENGTH=2048
# Tokens per GPU in one micro-batch (use_dynamic_bsz) of the update and of every log-prob pass (old policy,
# reference, ToR's image-removed): a recipe may set TOKEN_BUDGET after sourcing this file, MAX_TOKEN_LEN_PER_GPU
# overrides it. veRL's sequence balancer asserts when one sequence is longer than the budget, so a recipe's budget is
# raised to its longest sequence (prompt + response budget) and a smaller MAX_TOKEN_LEN_PER_GPU stops the script.
TOKEN_BUDGET=16384
# Images per prompt that vLLM accepts and sizes its memory for (every converted dataset has one per row; the
# preflight checks the data files against it), and the pixel range every image is resized into.
IMAGES_PER_PROMPT=1
# Validation in batches of this many samples (prompts x val_kwargs.n): veRL otherwise validates in one batch and
# TransferQueue holds every sample's float32 pixel values (≈ 6 MB at 262,144 pixels, 100 MB at 4,194,304) at once.
VAL_SAMPLES_PER_BATCH=512

# The paper's optimisation setting ("default settings of EasyR1"), identical for every arm and under SMOKE=1.
PAPER=(
  actor_rollout_ref.actor.optim.lr=1e-6
  actor_rollout_ref.actor.optim.lr_scheduler_type=constant
  actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.0
  actor_rollout_ref.actor.optim.weight_decay=0.01
  # veRL 0.9.1's engine clips with optim.clip_grad; actor.grad_clip is read by nothing.
  actor_rollout_ref.actor.optim.clip_grad=1.0
  # The vision tower trains: veRL's FSDP engine gives the optimizer every model parameter (its
  # actor.freeze_vision_tower is read by nothing; recipes/README.md).
  actor_rollout_ref.actor.ppo_epochs=1
  actor_rollout_ref.actor.entropy_coeff=0
  actor_rollout_ref.actor.loss_agg_mode=token-mean
  actor_rollout_ref.rollout.temperature=1.0
  actor_rollout_ref.rollout.top_p=1.0
  actor_rollout_ref.rollout.top_k=-1
  # Validation during training: greedy, the paper's evaluation protocol.
  actor_rollout_ref.rollout.val_kwargs.do_sample=false
  actor_rollout_ref.rollout.val_kwargs.temperature=0
  actor_rollout_ref.rollout.val_kwargs.n=1
  algorithm.adv_estimator=grpo
  algorithm.norm_adv_by_std_in_grpo=true
  algorithm.use_kl_in_reward=false
)

# GRPO arms: low-variance KL loss 0.01, symmetric clip.
GRPO=(
  actor_rollout_ref.actor.use_kl_loss=true
  actor_rollout_ref.actor.kl_loss_coef=0.01
  actor_rollout_ref.actor.kl_loss_type=low_var_kl
  actor_rollout_ref.actor.clip_ratio_low=0.2
  actor_rollout_ref.actor.clip_ratio_high=0.2
  algorithm.filter_groups.enable=false
)

# DAPO arms: no KL (no reference model), clip-higher, token-mean loss, dynamic sampling that keeps only groups
# whose accuracy differs between responses (0 < group accuracy < 1). veRL's V1 replay buffer evicts a group whose
# metric is identical across its responses and refills; `acc` is the accuracy that verl_tor.eval.rewards returns.
DAPO=(
  actor_rollout_ref.actor.use_kl_loss=false
  actor_rollout_ref.actor.clip_ratio_low=0.2
  actor_rollout_ref.actor.clip_ratio_high=0.28
  actor_rollout_ref.actor.loss_agg_mode=token-mean
  algorithm.filter_groups.enable=true
  algorithm.filter_groups.metric=acc
)

# ToR with the paper's values (arXiv 2603.25077, Table 4); recipes append tor.* changes after it.
# Token inspector (docs/inspector.md): 8 samples in full every 5 steps, into the run's checkpoint folder.
INSPECT=(
  tor.inspect.samples_per_step=8
  tor.inspect.every_n_steps=5
)
TOR=(
  tor.enable=true
  tor.method=tor
  tor.reasoning_quantile=0.3
  tor.perception_quantile=0.3
  tor.reasoning_weight=1.0
  tor.perception_weight=0.5
  tor.other_weight=0.0
  tor.entropy_top_p=0.95
  tor.counterfactual=remove_image
  "${INSPECT[@]}"
)

# compare_method NAME MODEL METHOD [OVERRIDE...]: one arm of a controlled comparison of token-credit methods
# (docs/methods.md): GRPO on Geometry3K with the preset tor.method=METHOD and nothing else changed, so the arms of
# one model differ only in the method (the grpo arm is the same trainer with every weight 1).
compare_method() {
  local name=$1 model=$2 method=$3
  shift 3
  run_recipe tor "$name" "GRPO, tor.method=$method" "$model" geo3k "${GRPO[@]}" tor.enable=true "tor.method=$method" \
    "${INSPECT[@]}" "$@"
}

# veRL's asynchronous trainer modes with ToR (README.md, "Trainer modes"); every other setting is the recipe's.
# colocate_async: rollout and training share the GPUs; generation runs one batch ahead and is aborted at each weight
# update, then resumed (partial rollouts).
COLOCATE_ASYNC=(
  trainer.v1.trainer_mode=tor_colocate_async
  trainer.v1.colocate_async.num_warmup_batches=1
)
# separate_async: ROLLOUT_NNODES nodes only generate (beside the NNODES training nodes), weights go to them over NCCL;
# each step is PARAMETER_SYNC_STEP local updates of train_batch_size / PARAMETER_SYNC_STEP prompts, which veRL
# requires to equal the mini-batch (512 / 4 = 128, the paper's).
ROLLOUT_NNODES="${ROLLOUT_NNODES:-2}"
PARAMETER_SYNC_STEP="${PARAMETER_SYNC_STEP:-4}"
SEPARATE_ASYNC=(
  trainer.v1.trainer_mode=tor_separate_async
  trainer.v1.separate_async.num_warmup_batches=1
  trainer.v1.separate_async.parameter_sync_step="$PARAMETER_SYNC_STEP"
  actor_rollout_ref.rollout.nnodes="$ROLLOUT_NNODES"
  actor_rollout_ref.rollout.n_gpus_per_node="$N_GPUS_PER_NODE"
  actor_rollout_ref.rollout.checkpoint_engine.backend=nccl
)

# base_gpu MODEL LOAD_PATH TRAIN_FILE VAL_FILE [PROMPT_LENGTH]: fills BASE for 8 x 80 GB GPUs per node
# (recipes/README.md: memory). MODEL is a row of the model table (family, size); LOAD_PATH is what is loaded (MODEL
# itself, a local copy, a merged checkpoint).
base_gpu() {
  local model=$1
  local prompt_length=${5:-${MAX_PROMPT_LENGTH:-$PROMPT_LENGTH}}
  local pixels_per_token=${PIXELS_PER_TOKEN[${MODEL_FAMILY[$model]}]}
  local min_pixels=$((PAPER_MIN_PIXELS * pixels_per_token / 784))
  local max_pixels=$((PAPER_MAX_PIXELS * pixels_per_token / 784))
  local longest=$((prompt_length + RESPONSE_LENGTH)) token_budget=${MAX_TOKEN_LEN_PER_GPU:-$TOKEN_BUDGET}
  if ((token_budget < longest)); then
    if [[ -n ${MAX_TOKEN_LEN_PER_GPU:-} ]]; then
      echo "MAX_TOKEN_LEN_PER_GPU=$token_budget is below this run's longest sequence, $longest tokens (prompt" \
        "$prompt_length + response $RESPONSE_LENGTH): veRL's sequence balancer would stop; set it to >= $longest" >&2
      exit 2
    fi
    token_budget=$longest
  fi
  BASE=(
    actor_rollout_ref.model.path="$2"
    data.train_files="$3"
    data.val_files="$4"
    data.image_key=images
    data.filter_overlong_prompts=true
    data.filter_overlong_prompts_workers=8
    data.dataloader_num_workers=8
    reward.custom_reward_function.path=pkg://verl_tor.eval.rewards
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.format_weight=0.1
    # The paper's sizes: 512 prompts x 12 responses per step, updates of 128 prompts, 15 epochs.
    data.train_batch_size=512
    actor_rollout_ref.rollout.n=12
    actor_rollout_ref.actor.ppo_mini_batch_size=128
    data.max_prompt_length="$prompt_length"
    data.max_response_length="$RESPONSE_LENGTH"
    trainer.total_epochs=15
    data.val_batch_size="$VAL_SAMPLES_PER_BATCH"
    # Image pixels (Qwen2.5-VL: 262,144-4,194,304): the processor (dataset, agent loop, vLLM) resizes into them.
    +data.mm_processor_kwargs.min_pixels="$min_pixels"
    +data.mm_processor_kwargs.max_pixels="$max_pixels"
    # Engine: FSDP2, bf16, flash-attention without padding, token-budgeted micro-batches.
    trainer.n_gpus_per_node="$N_GPUS_PER_NODE"
    trainer.nnodes="$NNODES"
    actor_rollout_ref.actor.strategy=fsdp2
    actor_rollout_ref.model.use_remove_padding=true
    actor_rollout_ref.model.enable_gradient_checkpointing=true
    +actor_rollout_ref.model.override_config.attn_implementation=flash_attention_2
    actor_rollout_ref.actor.entropy_from_logits_with_chunking=true
    actor_rollout_ref.actor.use_dynamic_bsz=true
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$token_budget"
    actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="$token_budget"
    actor_rollout_ref.ref.log_prob_max_token_len_per_gpu="$token_budget"
    actor_rollout_ref.actor.fsdp_config.param_offload=false
    actor_rollout_ref.actor.fsdp_config.optimizer_offload=false
    # Rollout: vLLM, one engine per ROLLOUT_TP GPUs, 60 % of the memory while generating (freed for training).
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.tensor_model_parallel_size="${ROLLOUT_TP[$model]}"
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6
    actor_rollout_ref.rollout.enforce_eager=false
    actor_rollout_ref.rollout.free_cache_engine=true
    # What vLLM sizes its memory for: the longest prompt + response (unset: the model's 128,000 tokens), our images
    # per prompt and no video (unset: 999 of each), images at our largest size (unset: the model's 12,845,056 pixels).
    actor_rollout_ref.rollout.max_model_len="$((prompt_length + RESPONSE_LENGTH))"
    "+actor_rollout_ref.rollout.engine_kwargs.vllm.limit_mm_per_prompt={image:$IMAGES_PER_PROMPT,video:0}"
    "+actor_rollout_ref.rollout.engine_kwargs.vllm.mm_processor_kwargs={min_pixels:$min_pixels,max_pixels:$max_pixels}"
  )
  BASE_ENV=()
}

# base_smoke RUN_DIR MODEL: fills BASE and BASE_ENV with the CPU swap (builds a tiny model of MODEL's family and the
# data unless DRY_RUN=1). Two prompts x 4 responses of up to 8 tokens: enough for DAPO's filter to find groups with
# mixed accuracy.
base_smoke() {
  local inputs="$1/smoke_inputs" overrides env
  if [[ $DRY_RUN != 1 && ! -f $inputs/model/config.json ]]; then
    "$PYTHON" -m verl_tor.testing.tiny_model --family "${MODEL_FAMILY[$2]}" --out "$inputs/model" >/dev/null
  fi
  if [[ $DRY_RUN != 1 && ! -f $inputs/data/val.parquet ]]; then
    "$PYTHON" -m verl_tor.testing.synthetic_data --out "$inputs/data" --train 32 --val 4 --seed 0 >/dev/null
  fi
  overrides=$("$PYTHON" -m verl_tor.testing.cpu_overrides --model "$inputs/model" --data "$inputs/data" --out "$1" \
    --steps 1 --train-batch-size 2 --rollout-n 4 --response-length 8)
  env=$("$PYTHON" -m verl_tor.testing.cpu_overrides --env)
  mapfile -t BASE <<<"$overrides"
  mapfile -t BASE_ENV <<<"$env"
  # veRL's length filter as on GPU, so that the count in run.json is exercised; in-process (workers null).
  BASE+=(data.filter_overlong_prompts=true data.filter_overlong_prompts_workers=null)
}

# run_overrides RUN_DIR NAME: fills RUN. Metrics go to RUN_DIR/metrics/<launch time>.jsonl (veRL's file logger
# truncates its file, so a resumed run writes a new one; verl_tor.eval.report merges them). Paths travel in Ray's
# runtime_env because the logger and the datasets live in the TaskRunner actor, possibly on another node. The
# datasets are veRL's, counting what the overlong-prompt filter removes into RUN_DIR/run.json.
run_overrides() {
  local save_freq=20 test_freq=5
  if [[ $SMOKE == 1 ]]; then save_freq=1 test_freq=1; fi
  RUN=(
    trainer.project_name=verl_tor
    trainer.experiment_name="$2"
    "trainer.logger=[$LOGGER,file]"
    +ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH="$1/metrics/$(date -u +%Y%m%dT%H%M%SZ).jsonl"
    +ray_kwargs.ray_init.runtime_env.env_vars.VERL_TOR_RUN_JSON="$1/run.json"
    data.custom_cls.path=pkg://verl_tor.launch.prompt_filter
    data.custom_cls.name=FilterCountingRLHFDataset
    trainer.default_local_dir="$1/checkpoints"
    trainer.save_freq="$save_freq"
    trainer.max_actor_ckpt_to_keep=2
    trainer.val_before_train=true
    trainer.test_freq="$test_freq"
  )
}

# run_info KEY VALUE...: the JSON object recorded as RUN_DIR/run.json.
run_info() {
  "$PYTHON" -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' "$@"
}

# preflight [ARG...]: python -m verl_tor.launch.preflight for this run, before anything starts; a failure stops the
# script. PREFLIGHT=0 skips it, DRY_RUN=1 runs nothing, SMOKE=1 skips its GPU and host checks (keeps disk, data and
# the FORWARD_ENV names). It checks this node: on several nodes, run `make preflight NNODES=…` on each of them.
preflight() {
  if [[ $PREFLIGHT == 0 || $DRY_RUN == 1 ]]; then return 0; fi
  local mode=()
  if [[ $SMOKE == 1 ]]; then mode=(--smoke); fi
  "$PYTHON" -m verl_tor.launch.preflight "${mode[@]}" --gpus "$N_GPUS_PER_NODE" --nnodes "$NNODES" \
    --output-dir "$OUTPUT_DIR" --logger "$LOGGER" --forward-env "$FORWARD_ENV" "$@"
}

# forwarded_names: VERL_TOR_FORWARD_ENV=<the FORWARD_ENV names that are set>, or nothing when none is.
forwarded_names() {
  local name names=()
  for name in $FORWARD_ENV; do
    if [[ -n ${!name:-} ]]; then names+=("$name"); fi
  done
  if ((${#names[@]})); then echo "VERL_TOR_FORWARD_ENV=$(IFS=,; echo "${names[*]}")"; fi
}

# print_command WORD...: the command as a shell command, one word per line with ` \` continuations (an override
# per line, as veRL's examples write them); `-m MODULE` stays on the interpreter's line.
print_command() {
  local word previous=""
  printf '%q' "$1"
  for word in "${@:2}"; do
    if [[ $word == -m || $previous == -m ]]; then printf ' %q' "$word"; else printf ' \\\n  %q' "$word"; fi
    previous=$word
  done
  printf '\n'
}

# launch RUN_DIR INFO_JSON COMMAND...: prints (DRY_RUN=1) or runs COMMAND with BASE_ENV, after recording
# RUN_DIR/run.json (what verl_tor.eval.report labels the run with) and RUN_DIR/command.sh.
launch() {
  local run_dir=$1 info=$2
  shift 2
  local forward
  forward=$(forwarded_names)
  local command=(env "${BASE_ENV[@]}" ${forward:+"$forward"} "$@")
  if [[ $DRY_RUN == 1 ]]; then
    print_command "${command[@]}"
    return
  fi
  mkdir -p "$run_dir/metrics"
  printf '%s\n' "$info" >"$run_dir/run.json"
  print_command "${command[@]}" >"$run_dir/command.sh"
  echo "run directory: $run_dir"
  "${command[@]}"
}

# run_recipe TRAINER NAME LABEL MODEL TRAIN_SET [OVERRIDE...]
#   TRAINER   ppo: veRL's stock ppo_trainer and sync trainer (baselines); tor: verl_tor's tor_trainer (tor_sync)
#   NAME      experiment name (EXPERIMENT_NAME overrides it); the run goes to RUN_DIR=OUTPUT_DIR/NAME
#   LABEL     the method as the paper's tables name it, e.g. "DAPO + ToR"
#   MODEL     the paper's model for this run (MODEL_PATH overrides it: a local copy, say)
#   TRAIN_SET data_prep name of the training set under DATA_ROOT (geo3k, virl39k)
# OVERRIDEs (the recipe's algorithm and tor.* settings, then the user's "$@") come last.
run_recipe() {
  local trainer=$1 name=$2 label=$3 model=$4 train_set=$5
  shift 5
  local config=(--config-name=ppo_trainer)
  if [[ $trainer == tor ]]; then config=(--config-path=pkg://verl_tor.config --config-name=tor_trainer); fi
  name="${EXPERIMENT_NAME:-$name}"
  if [[ $SMOKE == 1 && -z ${EXPERIMENT_NAME:-} ]]; then name="${name}_smoke"; fi
  RUN_DIR="$OUTPUT_DIR/$name"
  local run_dir=$RUN_DIR
  local train_file="$DATA_ROOT/$train_set/train.parquet" val_file="$DATA_ROOT/geo3k/test.parquet"
  if [[ $SMOKE == 1 ]]; then
    preflight
    base_smoke "$run_dir" "$model"
  else
    # Two checkpoints with optimizer state are kept (trainer.max_actor_ckpt_to_keep) plus eval.sh's merged copy.
    preflight --params-b "${PARAMS_B[$model]}" --checkpoints 2 --merged 1 --data "$train_file" "$val_file" \
      --max-images "$IMAGES_PER_PROMPT" --model "${MODEL_PATH:-$model}" --family "${MODEL_FAMILY[$model]}"
    base_gpu "$model" "${MODEL_PATH:-$model}" "$train_file" "$val_file"
  fi
  run_overrides "$run_dir" "$name"
  local info
  info=$(run_info kind train experiment "$name" label "$label" recipe_model "$model" train_set "$train_set" \
    smoke "$SMOKE" sized_for "${SIZED_FOR[$model]}")
  launch "$run_dir" "$info" "$PYTHON" -m verl.trainer.main_ppo "${config[@]}" \
    "${BASE[@]}" "${RUN[@]}" "${PAPER[@]}" "$@"
}
