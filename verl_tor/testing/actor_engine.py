"""veRL's real actor engine (``TrainingWorker`` + ``FSDPEngineWithLMHead``) in the current process, without Ray.

Built the way ``ActorRolloutRefWorker.init_model`` builds the actor (from veRL's composed ``ppo_trainer``
config) and the way veRL's SFT trainer runs it in a single process, so tests and benchmarks drive exactly the
forward that computes old log-probs in a real run: ``worker.infer_batch(TensorDict)``. On CPU it needs
``VERL_PLATFORM=cpu`` (set by the caller before veRL picks its platform), fsdp2, sdpa and no remove-padding.
"""

from __future__ import annotations

import inspect
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

# transformers model packages whose classes veRL's ``apply_monkey_patch`` changes for the families ToR supports.
PATCHED_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe")


def compose_ppo_config(overrides: list[str]) -> DictConfig:
    """veRL's ``ppo_trainer`` config from the installed wheel with Hydra ``overrides`` applied."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


def actor_overrides(model_path: str, micro_batch_size: int = 4) -> list[str]:
    """The CPU run's overrides (``cpu_overrides``: fsdp2, sdpa, fp32, no remove-padding) for ``model_path``."""
    from verl_tor.testing.cpu_overrides import cpu_overrides

    return cpu_overrides(model_path, data_dir=".", output_dir=".") + [
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={micro_batch_size}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro_batch_size}",
    ]


def init_single_process_group() -> None:
    """A world of one (gloo), as torchrun would set it up for veRL's single-process SFT trainer."""
    if torch.distributed.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)


@contextmanager
def actor_worker(overrides: list[str]) -> Iterator:
    """``build_actor_worker`` whose changes to transformers' model classes are undone on exit.

    veRL's engine monkey-patches methods of transformers' Qwen-VL classes for the whole process (its workers own
    their process): ``forward`` of the models, decoder layers and linear attention, the vision tower's position
    interpolation. Other code in the same process (an ``hf`` rollout server, a plain transformers model in another
    test) must get the original classes back.
    """
    import importlib

    modules = [importlib.import_module(f"transformers.models.{name}.modeling_{name}") for name in PATCHED_FAMILIES]
    classes = [c for m in modules for _, c in inspect.getmembers(m, inspect.isclass) if c.__module__ == m.__name__]
    # Every function veRL may replace (forward, fast_pos_embed_interpolate, ...), as the classes define them now.
    saved = {cls: {k: v for k, v in vars(cls).items() if inspect.isfunction(v)} for cls in classes}
    try:
        yield build_actor_worker(overrides)
    finally:
        for cls, functions in saved.items():
            for name, function in functions.items():
                if cls.__dict__.get(name) is not function:
                    setattr(cls, name, function)
            for name in [k for k, v in vars(cls).items() if inspect.isfunction(v) and k not in functions]:
                delattr(cls, name)  # added by veRL over an inherited method


def build_actor_worker(overrides: list[str]):
    """veRL's ``TrainingWorker`` for the actor of the composed config (engine initialised, eval-ready)."""
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.engine_workers import TrainingWorker, TrainingWorkerConfig

    init_single_process_group()
    config = compose_ppo_config(overrides).actor_rollout_ref
    model_config = omega_conf_to_dataclass(config.model)
    actor_config = omega_conf_to_dataclass(config.actor)
    worker_config = TrainingWorkerConfig(
        model_type="language_model",
        model_config=model_config,
        engine_config=actor_config.engine,
        optimizer_config=actor_config.optim,
        checkpoint_config=actor_config.checkpoint,
    )
    engine_config = worker_config.engine_config
    engine_config.use_dynamic_bsz = config.actor.use_dynamic_bsz
    engine_config.infer_micro_batch_size_per_gpu = config.rollout.log_prob_micro_batch_size_per_gpu
    engine_config.micro_batch_size_per_gpu = config.actor.ppo_micro_batch_size_per_gpu
    engine_config.infer_max_token_len_per_gpu = config.rollout.log_prob_max_token_len_per_gpu
    engine_config.max_token_len_per_gpu = config.actor.ppo_max_token_len_per_gpu
    engine_config.use_remove_padding = model_config.get("use_remove_padding", False)
    worker = TrainingWorker(config=worker_config)
    worker.reset()
    return worker
