"""The ``tor:`` section of the Hydra config: read and checked in veRL's own start-up validation.

``verl.utils.config.validate_config`` runs in the driver of ``main_ppo`` before Ray starts. We attach the ToR
checks to it, so a bad ``tor.*`` value (or a veRL setting ToR cannot work with) stops the run in seconds, with
the key named, before any worker or model exists. ``ToRTrainer`` reads the section again through the same
function, for entry points that skip ``validate_config``.
"""

from __future__ import annotations

import json
from types import ModuleType

from omegaconf import DictConfig

from verl_tor.counterfactual import COUNTERFACTUALS
from verl_tor.inspect.record import InspectConfig
from verl_tor.methods.config import TokenCreditConfig
from verl_tor.policy_loss import loss_mode, weight_target

TARGET_MODULE = "verl.utils.config"
TOR_MODE_PREFIX = "tor_"
"""``trainer.v1.trainer_mode=tor_<mode>`` runs veRL's trainer mode ``<mode>`` with ToR (``verl_tor.trainer``)."""


def read_tor_section(config: DictConfig) -> tuple[bool, TokenCreditConfig]:
    """``(enable, method)`` from the top-level ``tor:`` section (``tor.method`` and its overrides, resolved);
    raises ``ValueError`` naming a bad key.

    Also rejects veRL settings under which ToR cannot work, naming them.
    """
    section = config.get("tor")
    if section is None:
        raise ValueError(
            f"trainer.v1.trainer_mode={trainer_mode(config)} needs a top-level `tor:` section: launch "
            "with --config-path=pkg://verl_tor.config --config-name=tor_trainer, or add a `tor:` section to your own "
            "config (on the command line: +tor.enable=true)"
        )
    enable = section.get("enable", True)
    if not isinstance(enable, bool):
        raise ValueError(f"tor.enable must be true or false, got {enable!r}")
    tor = TokenCreditConfig.from_mapping(section, ignore=("enable", "inspect"))
    InspectConfig.from_mapping(section.get("inspect"))
    if enable:
        weight_target(loss_mode(config))
        if config.algorithm.get("use_kl_in_reward", False):
            raise ValueError(
                "algorithm.use_kl_in_reward=true puts the KL penalty inside the advantage, where ToR's token weights "
                "would weight (or zero) it, while the method leaves KL unweighted: set algorithm.use_kl_in_reward=false "
                "and use the KL loss (actor_rollout_ref.actor.use_kl_loss=true), as the paper's GRPO arms do"
            )
        rollout_correction = config.algorithm.get("rollout_correction", None)
        if rollout_correction is not None and rollout_correction.get("bypass_mode", False):
            raise ValueError(
                "tor.enable=true needs old log-probs recomputed by the actor (its forward gives the entropy): "
                "set algorithm.rollout_correction.bypass_mode=false"
            )
        if tor.uses_perception_score and tor.counterfactual not in COUNTERFACTUALS:
            raise ValueError(
                f"tor.counterfactual={tor.counterfactual} (tor.method={tor.method}) is not built by the trainer's "
                f"counterfactual pass; available: {', '.join(COUNTERFACTUALS)}"
            )
        truncated = tor.uses_reasoning_score and tor.entropy_top_p < 1.0
        if truncated and config.actor_rollout_ref.model.get("use_fused_kernels", False):
            raise ValueError(
                "tor.entropy_top_p < 1 needs the logits of the old-log-prob forward, which fused kernels do not "
                "return: set actor_rollout_ref.model.use_fused_kernels=false or tor.entropy_top_p=1.0"
            )
        if config.actor_rollout_ref.actor.get("strategy", "fsdp") not in ("fsdp", "fsdp2"):
            if truncated:
                raise ValueError(
                    "tor.entropy_top_p < 1 is implemented for veRL's FSDP engine: set "
                    "actor_rollout_ref.actor.strategy=fsdp2 (or fsdp), or tor.entropy_top_p=1.0"
                )
    return enable, tor


def method_record(tor: TokenCreditConfig, target: str | None) -> dict:
    """The resolved method as the start-up log, ``run.json`` and ``tor_method.json`` record it."""
    return {**tor.components(), "weight_target": target}


def log_method(record: dict) -> None:
    """One start-up line naming the resolved method and every component."""
    print(f"[verl_tor] token-credit method: {json.dumps(record)}", flush=True)


def trainer_mode(config: DictConfig) -> str | None:
    """``trainer.v1.trainer_mode`` of the run."""
    return config.get("trainer", {}).get("v1", {}).get("trainer_mode")


def uses_tor_trainer(config: DictConfig) -> bool:
    """Whether the run selects a ToR trainer (``trainer.v1.trainer_mode=tor_<mode>``)."""
    mode = trainer_mode(config)
    return isinstance(mode, str) and mode.startswith(TOR_MODE_PREFIX)


def tor_section_enabled(config: DictConfig) -> bool:
    """Whether the config has a ``tor:`` section that asks for ToR (``tor.enable``, true by default)."""
    section = config.get("tor")
    return section is not None and section.get("enable", True) is True


def require_tor_trainer(config: DictConfig) -> None:
    """Stop a run whose enabled ``tor:`` section would be silently ignored: ToR's steps live in the V1 trainers ``tor_<mode>``.

    ``trainer.use_v1=false`` makes veRL run its legacy trainer (``main_ppo_v0``), which never reads
    ``trainer.v1.trainer_mode``; a mode without the ``tor_`` prefix is veRL's own trainer. Either way the run would
    be plain GRPO/DAPO with ToR's settings in its config.
    """
    if not config.get("trainer", {}).get("use_v1", True):
        raise ValueError(
            "trainer.use_v1=false runs veRL's legacy trainer (main_ppo_v0), which ignores trainer.v1.trainer_mode: "
            "ToR would silently not run. Set trainer.use_v1=true (veRL's default), or tor.enable=false for a run "
            "without ToR"
        )
    if not uses_tor_trainer(config):
        raise ValueError(
            f"trainer.v1.trainer_mode={trainer_mode(config)} is veRL's own trainer, which ignores the tor: section: "
            f"ToR would silently not run. Use trainer.v1.trainer_mode={TOR_MODE_PREFIX}<mode> (tor_sync, "
            "tor_colocate_async, tor_separate_async), or tor.enable=false for a run without ToR"
        )


def install(verl_config: ModuleType) -> None:
    """Wrap ``verl.utils.config.validate_config`` to check the ``tor:`` section of ToR runs as well."""
    original = verl_config.validate_config
    if getattr(original, "_verl_tor_patched", False):
        return

    def validate_config(config: DictConfig, *args, **kwargs):
        result = original(config, *args, **kwargs)
        if tor_section_enabled(config):
            require_tor_trainer(config)
        if uses_tor_trainer(config) or tor_section_enabled(config):
            enable, tor = read_tor_section(config)
            if enable:
                log_method(method_record(tor, weight_target(loss_mode(config))))
        return result

    validate_config._verl_tor_patched = True
    validate_config.__wrapped__ = original
    verl_config.validate_config = validate_config


def read_inspect_section(config: DictConfig) -> InspectConfig:
    """The token inspector's ``tor.inspect`` section (off when absent)."""
    return InspectConfig.from_mapping(config.get("tor", {}).get("inspect"))
