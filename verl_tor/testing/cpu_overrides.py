"""The Hydra overrides and environment that turn any ``main_ppo`` command into a CPU run on the tiny model.

One list for tests, the CPU demo and ``SMOKE=1`` recipes. Later overrides win in Hydra, so a recipe appends its
own (algorithm, ToR settings) after these, or replaces a value by appending it again.

    export $(python -m verl_tor.testing.cpu_overrides --env)
    mapfile -t CPU < <(python -m verl_tor.testing.cpu_overrides --model M --data D --out O)
    python -m verl.trainer.main_ppo "${CPU[@]}" algorithm.adv_estimator=grpo ...
"""

from __future__ import annotations

import argparse
import os

# Enough logical Ray CPUs for TaskRunner, TransferQueue (controller + storage units), the worker, the agent-loop,
# reward and rollout actors; with fewer, actors wait for resources and the run hangs without a message.
RAY_LOGICAL_CPUS = 8
MAX_TOKENS_PER_MICRO_BATCH = 16384


def cpu_env() -> dict[str, str]:
    """Environment of a CPU run: the CPU platform and no tokenizer thread pools on a small machine."""
    return {
        "VERL_PLATFORM": "cpu",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def cpu_overrides(
    model_path: str,
    data_dir: str,
    output_dir: str,
    steps: int = 2,
    train_batch_size: int = 4,
    rollout_n: int = 4,
    response_length: int = 4,
    prompt_length: int = 128,
) -> list[str]:
    """Overrides for ``python -m verl.trainer.main_ppo`` (stock config) on CPU with the ``hf`` rollout.

    ``data_dir`` holds ``train.parquet``/``val.parquet`` (:mod:`verl_tor.testing.synthetic_data`); checkpoints go
    to ``output_dir/checkpoints``. One optimizer update per step (mini-batch = train batch), plain GRPO without
    KL (no reference model), no validation and no checkpoints unless the caller appends them.
    """
    return [
        # Model and data.
        f"actor_rollout_ref.model.path={model_path}",
        f"data.train_files={os.path.join(data_dir, 'train.parquet')}",
        f"data.val_files={os.path.join(data_dir, 'val.parquet')}",
        f"data.train_batch_size={train_batch_size}",
        f"data.max_prompt_length={prompt_length}",
        f"data.max_response_length={response_length}",
        "data.dataloader_num_workers=0",
        "reward.custom_reward_function.path=pkg://verl_tor.testing.colour_reward",
        "reward.custom_reward_function.name=compute_score",
        "reward.num_workers=1",
        # Algorithm defaults of the CPU runs (a recipe overrides them).
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.actor.use_kl_loss=false",
        "actor_rollout_ref.actor.optim.lr=5e-4",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={train_batch_size}",
        # Micro-batches by token count: one forward for a small batch, and no divisibility constraint between
        # batch size, rollout n and micro-batch size when a recipe changes them.
        "actor_rollout_ref.actor.use_dynamic_bsz=true",
        f"actor_rollout_ref.actor.ppo_max_token_len_per_gpu={MAX_TOKENS_PER_MICRO_BATCH}",
        # CPU engine: fp32 FSDP2, sdpa attention, no flash-attn padding removal, no torch.compile.
        "trainer.device=cpu",
        "trainer.n_gpus_per_node=1",
        "trainer.nnodes=1",
        "actor_rollout_ref.actor.strategy=fsdp2",
        # The engine's autocast dtype is mixed_precision.param_dtype (default bf16), not fsdp_config.dtype.
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32",
        "+actor_rollout_ref.ref.fsdp_config.mixed_precision.param_dtype=fp32",
        "actor_rollout_ref.actor.use_torch_compile=false",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile=false",
        "actor_rollout_ref.ref.fsdp_config.use_torch_compile=false",
        "actor_rollout_ref.model.use_remove_padding=false",
        "actor_rollout_ref.model.enable_gradient_checkpointing=false",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        # Rollout: HF generate in one process, one agent-loop worker (more cost start-up on 2 cores).
        "actor_rollout_ref.rollout.name=hf",
        f"actor_rollout_ref.rollout.n={rollout_n}",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.dtype=float32",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "+actor_rollout_ref.rollout.engine_kwargs.hf.suppress_vision_tokens=true",
        # Ray and TransferQueue sized for a small machine.
        f"ray_kwargs.ray_init.num_cpus={RAY_LOGICAL_CPUS}",
        # Always a fresh local cluster: never attach to a Ray cluster someone else started on this machine.
        "+ray_kwargs.ray_init.address=local",
        # The dashboard is a dozen extra processes competing for the cores during start-up.
        "+ray_kwargs.ray_init.include_dashboard=false",
        # Each storage unit holds one logical CPU (veRL's default of 8 units exceeds the cluster and hangs).
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        # Trainer loop.
        f"trainer.total_training_steps={steps}",
        "trainer.total_epochs=1000",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.logger=[console]",
        "trainer.project_name=verl_tor_cpu",
        "trainer.experiment_name=cpu",
        f"trainer.default_local_dir={os.path.join(output_dir, 'checkpoints')}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.testing.cpu_overrides",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--env", action="store_true", help="print the environment (NAME=value lines) instead")
    parser.add_argument("--model", help="tiny model folder (verl_tor.testing.tiny_model)")
    parser.add_argument("--data", help="folder with train.parquet and val.parquet")
    parser.add_argument("--out", help="run output folder (checkpoints)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--train-batch-size", type=int, default=4)
    parser.add_argument("--rollout-n", type=int, default=4)
    parser.add_argument("--response-length", type=int, default=4)
    args = parser.parse_args()
    if args.env:
        lines = [f"{name}={value}" for name, value in cpu_env().items()]
    else:
        if not (args.model and args.data and args.out):
            parser.error("--model, --data and --out are required (or --env)")
        lines = cpu_overrides(
            args.model,
            args.data,
            args.out,
            steps=args.steps,
            train_batch_size=args.train_batch_size,
            rollout_n=args.rollout_n,
            response_length=args.response_length,
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
