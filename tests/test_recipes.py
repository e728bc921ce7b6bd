"""The recipes in ``recipes/``: every override is valid for the installed veRL 0.9.1, on GPU and under SMOKE=1.

For every recipe (and every value of the gamma_p sweep, and ``eval.sh`` in each mode) the script runs with
``DRY_RUN=1``, which prints the exact ``main_ppo`` command; that override list is composed with Hydra against the
installed veRL (and ``verl_tor.config``) and checked the way ``main_ppo`` and its TaskRunner would: veRL's
``validate_config``, veRL's config dataclasses of each section, and the trainer class built from the config (its
replay buffer with DAPO's group filter, ToR's ``tor:`` section). Both forms are checked: the GPU command and the
SMOKE=1 command. One recipe (7B Geometry3K DAPO + ToR: dynamic sampling and ToR) then runs end to end on the CPU
with SMOKE=1, its checkpoint is evaluated with ``eval.sh`` (merge included), and ``verl_tor.eval.report`` reads both.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
SWEEP = "qwen2_5_vl_7b_geo3k_grpo_tor_gamma_p.sh"
GPU_SMOKE = "gpu_smoke.sh"
TRAINING_RECIPES = sorted(
    path.name for path in RECIPES.glob("*.sh") if path.name not in ("common.sh", "eval.sh", SWEEP, GPU_SMOKE)
)
GAMMA_P_SWEEP = ("0.1", "0.25", "0.5", "1.0", "1.5")
# (script, arguments) of every run the recipes can launch; "{checkpoint}" is a recipe's checkpoint folder.
INVOCATIONS = (
    [(name, ()) for name in TRAINING_RECIPES]
    + [(SWEEP, (value,)) for value in GAMMA_P_SWEEP]
    + [("eval.sh", ("Qwen/Qwen2.5-VL-7B-Instruct",)), ("eval.sh", ("Qwen/Qwen3-VL-8B-Instruct",))]
    + [("eval.sh", ("{checkpoint}",))]
    + [(GPU_SMOKE, ())]
)
# Recipes whose trainer mode cannot run on a CPU (separate_async syncs weights over NCCL): no SMOKE=1 command.
GPU_ONLY = {name for name in TRAINING_RECIPES if "_separate_async" in name} | {GPU_SMOKE}
SMOKE_INVOCATIONS = [(script, args) for script, args in INVOCATIONS if script not in GPU_ONLY]
# What each recipe trains, by its name: the model-table row of its prefix, the trainer mode of its suffix.
RECIPE_MODELS = {
    "qwen2_5_vl_7b_": ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl"),
    "qwen2_5_vl_3b_": ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl"),
    "qwen3_vl_8b_": ("Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl"),
    "qwen3_vl_4b_": ("Qwen/Qwen3-VL-4B-Instruct", "qwen3_vl"),
    "qwen3_vl_30b_a3b_": ("Qwen/Qwen3-VL-30B-A3B-Instruct", "qwen3_vl_moe"),
    "qwen3_5_9b_": ("Qwen/Qwen3.5-9B", "qwen3_5"),
    "gpu_smoke": ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl"),
}
# The paper's 262,144-4,194,304 pixels are 334.4-5,349.9 visual tokens of 28 x 28 pixels (Qwen2.5-VL); the Qwen3
# families' tokens cover 32 x 32 pixels, so the same token counts are 342,392-5,478,274 pixels.
PIXEL_RANGES = {"qwen2_5_vl": (262144, 4194304), "qwen3_vl": (342392, 5478274)}
PIXEL_RANGES.update(qwen3_vl_moe=PIXEL_RANGES["qwen3_vl"], qwen3_5=PIXEL_RANGES["qwen3_vl"])


def recipe_model(script: str) -> tuple[str, str]:
    """(model-table row, family) a recipe trains."""
    return next(value for prefix, value in RECIPE_MODELS.items() if script.startswith(prefix))


def recipe_trainer_mode(script: str) -> str:
    uses_tor = "_tor" in script or "_only" in script or "_compare_" in script or script == GPU_SMOKE
    mode = next((mode for mode in ("colocate_async", "separate_async") if script.endswith(f"_{mode}.sh")), "sync")
    return f"tor_{mode}" if uses_tor else mode


SMOKE_RUN_TIMEOUT_S = 600
CONFIG_MODULES = {None: "verl.trainer.config", "pkg://verl_tor.config": "verl_tor.config"}
# Variables the recipes read from the caller's environment; the dry runs start without them.
RECIPE_ENV = (
    "SMOKE", "DRY_RUN", "EXPERIMENT_NAME", "PREFLIGHT", "MAX_PROMPT_LENGTH", "MAX_TOKEN_LEN_PER_GPU", "FORWARD_ENV",
    "EVAL_PROTOCOL", "IMAGE", "EVAL_MODE", "RECIPE_MODEL", "EVAL_BATCH_SAMPLES",
)  # fmt: skip
FORWARDED = ("WANDB_API_KEY", "HF_TOKEN", "HF_HOME")
VERL_ROOT = Path(importlib.util.find_spec("verl").origin).parent


def run_script(script: str, args: tuple[str, ...], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``bash recipes/<script> args`` with a clean environment: this interpreter, outputs under ``tmp_path``."""
    base = {key: value for key, value in os.environ.items() if key not in RECIPE_ENV + FORWARDED}
    base.update(PYTHON=sys.executable, OUTPUT_DIR=str(tmp_path / "runs"), DATA_ROOT=str(tmp_path / "data"))
    base.update(env)
    return subprocess.run(
        ["bash", str(RECIPES / script), *args], env=base, capture_output=True, text=True, cwd=tmp_path, check=False
    )


def dry_run_commands(script: str, args: tuple[str, ...], tmp_path: Path, **env: str) -> list[list[str]]:
    """The commands the script would run (DRY_RUN=1), each split into words."""
    result = run_script(script, args, tmp_path, DRY_RUN="1", **env)
    assert result.returncode == 0, result.stderr
    return [shlex.split(command) for command in shell_commands(result.stdout)]


def shell_commands(text: str) -> list[str]:
    """The commands of a printed script, one per logical line (lines ending in `` \\`` continue)."""
    return [command for command in re.sub(r" \\\n", " ", text).splitlines() if command.strip()]


def main_ppo_command(words: list[str]) -> tuple[dict[str, str], str | None, str, list[str]]:
    """``(environment, config path, config name, overrides)`` of ``env K=V... python -m verl.trainer.main_ppo``."""
    start = words.index("verl.trainer.main_ppo")
    assert words[0] == "env" and words[start - 1] == "-m"
    environment = dict(word.split("=", 1) for word in words[1 : start - 2])
    options = {word.split("=", 1)[0]: word.split("=", 1)[1] for word in words[start + 1 :] if word.startswith("--")}
    overrides = [word for word in words[start + 1 :] if not word.startswith("--")]
    return environment, options.get("--config-path"), options["--config-name"], overrides


def compose_config(config_path: str | None, config_name: str, overrides: list[str]) -> DictConfig:
    """Hydra's compose API, as ``main_ppo``'s ``@hydra.main`` composes the command line."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULES[config_path], version_base=None):
        return compose(config_name=config_name, overrides=overrides)


@functools.cache
def _composed_base(config_path: str | None, config_name: str) -> DictConfig:
    return compose_config(config_path, config_name, [])


def apply_overrides(config_path: str | None, config_name: str, overrides: list[str]) -> DictConfig:
    """``compose_config`` in milliseconds instead of a second (Hydra re-reads some thirty YAML files per compose):
    Hydra's own override parser and the function its compose applies value overrides with, on a copy of the
    composed base config. Our recipes select no config group, so this is the same composition (tested below)."""
    config = copy.deepcopy(_composed_base(config_path, config_name))
    ConfigLoaderImpl._apply_overrides_to_config(OverridesParser.create().parse_overrides(overrides), config)
    return config


def check_like_main_ppo(config: DictConfig, model_dir: str) -> object:
    """What ``main_ppo`` and ``TaskRunnerV1.run`` do with the config before any worker starts; returns the trainer.

    The model path is replaced by the tiny model (the real one is not downloaded here) so that veRL's
    ``HFModelConfig`` checks the model section's other keys.
    """
    from verl.trainer.ppo.reward import get_custom_reward_fn, resolve_reward_manager_cls
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.trainer.ppo.v1 import get_trainer_cls
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    config.transfer_queue.enable = True
    OmegaConf.resolve(config)
    config.actor_rollout_ref.model.path = model_dir
    for section in ("actor_rollout_ref.actor", "actor_rollout_ref.rollout", "actor_rollout_ref.model", "algorithm"):
        omega_conf_to_dataclass(OmegaConf.select(config, section))
    # veRL reads `reward` as a plain config (its RewardConfig dataclass does not even build in 0.9.1).
    assert callable(get_custom_reward_fn(config))
    resolve_reward_manager_cls(config)
    # The worker renames the reference model's log-prob keys to the actor's before building its config.
    ref = config.actor_rollout_ref.ref.copy()
    with open_dict(ref):
        ref.ppo_mini_batch_size = config.actor_rollout_ref.actor.ppo_mini_batch_size
        ref.ppo_micro_batch_size = ref.pop("log_prob_micro_batch_size", None)
        ref.ppo_micro_batch_size_per_gpu = ref.pop("log_prob_micro_batch_size_per_gpu", None)
        ref.use_dynamic_bsz = ref.pop("log_prob_use_dynamic_bsz", False)
        ref.ppo_max_token_len_per_gpu = ref.pop("log_prob_max_token_len_per_gpu", None)
    omega_conf_to_dataclass(ref)
    return get_trainer_cls(config.trainer.v1.trainer_mode)(config=config)


@pytest.fixture(scope="module")
def recipe_dir(tmp_path_factory) -> Path:
    """Working folder of the dry runs, with an (empty) checkpoint folder laid out as a recipe writes it."""
    path = tmp_path_factory.mktemp("recipes")
    (path / "runs" / "some_run" / "checkpoints" / "global_step_60" / "actor").mkdir(parents=True)
    (path / "runs" / "some_run" / "run.json").write_text(json.dumps({"recipe_model": "Qwen/Qwen3-VL-4B-Instruct"}))
    return path


@pytest.fixture(scope="module")
def checkpoint_dir(recipe_dir) -> str:
    return str(recipe_dir / "runs" / "some_run" / "checkpoints" / "global_step_60")


@pytest.fixture(scope="module")
def recipe_command(recipe_dir, checkpoint_dir):
    """``recipe_command(script, args, smoke, extra=()) -> (environment, config path, config name, overrides)`` of
    the script's main_ppo command, from one dry run per module."""
    cache: dict[tuple, tuple[dict[str, str], str | None, str, list[str]]] = {}

    def get(script: str, args: tuple[str, ...], smoke: bool, extra: tuple[str, ...] = ()):
        key = (script, args, smoke, extra)
        if key not in cache:
            words = tuple(arg.format(checkpoint=checkpoint_dir) for arg in args) + extra
            env = {"SMOKE": "1"} if smoke else {}
            commands = [
                cmd for cmd in dry_run_commands(script, words, recipe_dir, **env) if "verl.trainer.main_ppo" in cmd
            ]
            assert len(commands) == 1
            cache[key] = main_ppo_command(commands[0])
        environment, config_path, config_name, overrides = cache[key]
        return dict(environment), config_path, config_name, list(overrides)

    return get


@pytest.fixture(scope="module")
def recipe_config(recipe_command):
    """``recipe_config(script, args, smoke, extra=()) -> (config, environment)`` of the script's main_ppo command;
    each command is composed once per module (Hydra takes about a second) and handed out as a fresh copy."""
    cache: dict[tuple, tuple[DictConfig, dict[str, str]]] = {}

    def get(script: str, args: tuple[str, ...], smoke: bool, extra: tuple[str, ...] = ()):
        key = (script, args, smoke, extra)
        if key not in cache:
            environment, config_path, config_name, overrides = recipe_command(script, args, smoke, extra)
            cache[key] = (apply_overrides(config_path, config_name, overrides), environment)
        config, environment = cache[key]
        return copy.deepcopy(config), dict(environment)

    return get


@pytest.mark.parametrize("script", ["qwen2_5_vl_7b_geo3k_dapo.sh", "qwen2_5_vl_7b_geo3k_dapo_tor.sh"])
def test_fast_composition_equals_hydra_compose(script, recipe_dir):
    [words] = dry_run_commands(script, (), recipe_dir)
    _, config_path, config_name, overrides = main_ppo_command(words)
    fast, full = (
        apply_overrides(config_path, config_name, overrides),
        compose_config(config_path, config_name, overrides),
    )
    assert OmegaConf.to_container(fast) == OmegaConf.to_container(full)


RECIPE_CASES = [(s, a, False) for s, a in INVOCATIONS] + [(s, a, True) for s, a in SMOKE_INVOCATIONS]


@pytest.mark.parametrize(
    ("script", "args", "smoke"),
    RECIPE_CASES,
    ids=[" ".join((s, *a, "smoke" if k else "gpu")) for s, a, k in RECIPE_CASES],
)
def test_recipe_config_is_valid_for_verl(script, args, smoke, recipe_config, tiny_model_dirs):
    config, environment = recipe_config(script, args, smoke)
    # veRL's HFModelConfig checks are run against a tiny model of the recipe's family (eval.sh: the table row).
    family = recipe_model(script)[1] if script != "eval.sh" else "qwen2_5_vl"
    trainer = check_like_main_ppo(config, tiny_model_dirs[family])
    if smoke:
        assert environment.get("VERL_PLATFORM") == "cpu"
        assert config.actor_rollout_ref.rollout.name == "hf"
        assert config.trainer.total_training_steps == 1
    else:
        assert environment == {}
        assert config.actor_rollout_ref.rollout.name == "vllm"
    mode = config.trainer.v1.trainer_mode
    if mode.startswith("tor_"):
        assert trainer.tor_enabled and trainer.trainer_mode == mode.removeprefix("tor_")
    dapo = bool(config.algorithm.filter_groups.enable)
    assert trainer.replay_buffer.filter_groups_metric == ("acc" if dapo else None)
    # Baselines and ToR arms of a mode sample alike: veRL's sync replay buffer (DAPO refills, no off-policy
    # machinery) in the synchronous mode, its asynchronous one in the others.
    expected_buffer = ReplayBuffer if mode.removeprefix("tor_") == "sync" else ReplayBufferAsync
    assert type(trainer.replay_buffer) is expected_buffer


def token_budgets(config: DictConfig) -> dict[str, int]:
    """Every micro-batch token budget in the config (``*max_token_len_per_gpu``, wherever veRL declares one)."""

    def walk(node, prefix):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                yield from walk(value, path)
            elif key.endswith("max_token_len_per_gpu") and value is not None:
                yield path, value

    return dict(walk(OmegaConf.to_container(config, resolve=True), ""))


def longest_sequence(config: DictConfig) -> int:
    return config.data.max_prompt_length + config.data.max_response_length


@pytest.mark.parametrize(
    ("script", "args", "smoke"),
    RECIPE_CASES,
    ids=[" ".join((s, *a, "smoke" if k else "gpu")) for s, a, k in RECIPE_CASES],
)
def test_token_budgets_hold_the_longest_sequence(script, args, smoke, recipe_config):
    """veRL's sequence balancer asserts when one sequence (prompt + response) is longer than a micro-batch budget."""
    config, _ = recipe_config(script, args, smoke)
    budgets = token_budgets(config)
    assert {
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu",
        "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu",
    } <= set(budgets)
    assert all(budget >= longest_sequence(config) for budget in budgets.values()), budgets


def test_token_budget_follows_the_prompt_budget_and_refuses_a_smaller_one(tmp_path):
    def config(script, **env):
        [words] = dry_run_commands(script, (), tmp_path, **env)
        _, config_path, config_name, overrides = main_ppo_command(words)
        return apply_overrides(config_path, config_name, overrides)

    raised = config("qwen3_vl_30b_a3b_geo3k_dapo_tor.sh", MAX_PROMPT_LENGTH="16384")
    actor = {key: value for key, value in token_budgets(raised).items() if key.startswith("actor_rollout_ref.")}
    assert set(actor.values()) == {16384 + 2048} and len(actor) == 3
    chosen = config("qwen2_5_vl_7b_virl39k_dapo_tor.sh", MAX_TOKEN_LEN_PER_GPU="12288")
    assert token_budgets(chosen)["actor_rollout_ref.actor.ppo_max_token_len_per_gpu"] == 12288
    refused = run_script("qwen2_5_vl_7b_virl39k_dapo_tor.sh", (), tmp_path, DRY_RUN="1", MAX_TOKEN_LEN_PER_GPU="8192")
    assert refused.returncode == 2 and "MAX_TOKEN_LEN_PER_GPU=8192" in refused.stderr and "10240" in refused.stderr


def test_readme_token_budget_advice_fits_every_recipe(recipe_config):
    """Every budget the README advises is at least the longest sequence any recipe allows."""
    text = (RECIPES / "README.md").read_text()
    advised = [int(value.replace(",", "")) for value in re.findall(r"max_token_len_per_gpu=([\d,]+)", text, re.I)]
    longest = max(longest_sequence(recipe_config(s, a, False)[0]) for s, a in INVOCATIONS)
    assert advised and longest == 8192 + 2048
    assert all(value >= longest for value in advised), advised


def test_gpu_only_recipes_refuse_smoke_runs(tmp_path):
    """They exit 2 saying why (no CPU checkpoint engine in veRL; the GPU smoke is a GPU check), and that reason holds
    for the installed veRL: its separate_async trainer refuses the in-process engine."""
    from verl.checkpoint_engine import CheckpointEngineRegistry
    from verl.trainer.ppo.v1.trainer_separate_async import PPOTrainerSeparateAsync

    reasons = {GPU_SMOKE: "the CPU smoke is SMOKE=1"} | {
        script: "needs GPUs (nccl; it refuses the in-process 'naive' one)" for script in GPU_ONLY - {GPU_SMOKE}
    }
    for script, reason in reasons.items():
        refused = run_script(script, (), tmp_path, SMOKE="1", DRY_RUN="1")
        assert refused.returncode == 2 and reason in " ".join(refused.stderr.split()), (script, refused.stderr)
    config = compose_config(None, "ppo_trainer", ["actor_rollout_ref.rollout.checkpoint_engine.backend=naive"])
    config.trainer.v1.separate_async.parameter_sync_step = config.data.train_batch_size // 256
    config.actor_rollout_ref.actor.ppo_mini_batch_size = 256
    config.actor_rollout_ref.rollout.nnodes = config.actor_rollout_ref.rollout.n_gpus_per_node = 1
    with pytest.raises(AssertionError, match="nccl/nixl/mooncake"):
        PPOTrainerSeparateAsync(config)
    # The engines veRL 0.9.1 ships besides `naive` (one module each): none for a CPU.
    shipped = {path.stem for path in (VERL_ROOT / "checkpoint_engine").glob("*_checkpoint_engine.py")}
    assert shipped == {f"{name}_checkpoint_engine" for name in ("nccl", "delta", "hccl", "nixl", "mooncake", "kimi")}
    assert "naive" in CheckpointEngineRegistry._registry


def _algorithm_settings(config: DictConfig) -> dict:
    actor = config.actor_rollout_ref.actor
    rollout = config.actor_rollout_ref.rollout
    return {
        "algorithm": OmegaConf.to_container(config.algorithm, resolve=True),
        "tor": OmegaConf.to_container(config.tor, resolve=True) if "tor" in config else None,
        "trainer_mode": config.trainer.v1.trainer_mode,
        "actor": {key: actor[key] for key in ("use_kl_loss", "kl_loss_coef", "kl_loss_type", "loss_agg_mode")}
        | {key: actor[key] for key in ("clip_ratio_low", "clip_ratio_high", "clip_ratio_c", "entropy_coeff")}
        | {"lr": actor.optim.lr, "clip_grad": actor.optim.clip_grad, "scheduler": actor.optim.lr_scheduler_type},
        "rollout": {key: rollout[key] for key in ("temperature", "top_p", "top_k")}
        | {"val": OmegaConf.to_container(rollout.val_kwargs, resolve=True)},
    }


@pytest.mark.parametrize(("script", "args"), SMOKE_INVOCATIONS, ids=[" ".join((s, *a)) for s, a in SMOKE_INVOCATIONS])
def test_smoke_keeps_the_algorithm_and_tor_settings(script, args, recipe_config):
    """SMOKE=1 swaps model, data, device, rollout, sizes and steps only: every algorithm/ToR value is the GPU one."""
    gpu, _ = recipe_config(script, args, False)
    smoke, _ = recipe_config(script, args, True)
    assert _algorithm_settings(smoke) == _algorithm_settings(gpu)


@pytest.mark.parametrize("script", TRAINING_RECIPES)
def test_gpu_recipe_has_the_papers_setting(script, recipe_config):
    config, _ = recipe_config(script, (), False)
    actor, rollout, data = config.actor_rollout_ref.actor, config.actor_rollout_ref.rollout, config.data
    assert (data.train_batch_size, rollout.n, actor.ppo_mini_batch_size) == (512, 12, 128)
    assert (data.max_response_length, config.trainer.total_epochs) == (2048, 15)
    assert data.val_batch_size == 512
    assert (actor.optim.lr, actor.optim.lr_scheduler_type, actor.optim.lr_warmup_steps_ratio) == (1e-6, "constant", 0)
    assert (rollout.temperature, rollout.top_p, rollout.top_k) == (1.0, 1.0, -1)
    model, family = recipe_model(script)
    assert tuple(data.mm_processor_kwargs.values()) == PIXEL_RANGES[family]
    assert config.reward.custom_reward_function.path == "pkg://verl_tor.eval.rewards"
    assert not rollout.val_kwargs.do_sample and rollout.val_kwargs.n == 1
    if "_dapo" in script:
        assert not actor.use_kl_loss
        assert (actor.clip_ratio_low, actor.clip_ratio_high, actor.loss_agg_mode) == (0.2, 0.28, "token-mean")
        assert config.algorithm.filter_groups.enable and config.algorithm.filter_groups.metric == "acc"
    else:
        assert actor.use_kl_loss and (actor.kl_loss_coef, actor.kl_loss_type) == (0.01, "low_var_kl")
        assert (actor.clip_ratio_low, actor.clip_ratio_high) == (0.2, 0.2)
        assert not config.algorithm.filter_groups.enable
    assert config.trainer.v1.trainer_mode == recipe_trainer_mode(script)
    assert config.actor_rollout_ref.model.path == model
    assert data.train_files.endswith("virl39k/train.parquet" if "virl39k" in script else "geo3k/train.parquet")


def test_ablations_and_sweep_set_the_token_weights(recipe_config, tmp_path):
    def tor(script, *args):
        return dict(recipe_config(script, args, False)[0].tor)

    paper = {"reasoning_weight": 1.0, "perception_weight": 0.5, "other_weight": 0.0}
    assert {key: tor("qwen2_5_vl_7b_geo3k_dapo_tor.sh")[key] for key in paper} == paper
    reasoning_only = tor("qwen2_5_vl_7b_geo3k_grpo_reasoning_only.sh")
    assert (
        reasoning_only["reasoning_weight"],
        reasoning_only["perception_weight"],
        reasoning_only["other_weight"],
    ) == (
        1.0,
        0.0,
        0.0,
    )
    perception_only = tor("qwen2_5_vl_7b_geo3k_grpo_perception_only.sh")
    assert (perception_only["reasoning_weight"], perception_only["perception_weight"]) == (0.0, 1.0)
    assert perception_only["other_weight"] == 0.0
    for value in GAMMA_P_SWEEP:
        assert tor(SWEEP, value)["perception_weight"] == float(value)
    assert run_script(SWEEP, ("0.7",), tmp_path, DRY_RUN="1").returncode != 0


@pytest.mark.parametrize("smoke", [False, True], ids=["gpu", "smoke"])
def test_command_line_overrides_win(smoke, recipe_config):
    extra = ("actor_rollout_ref.actor.optim.lr=3e-6", "tor.perception_weight=0.75")
    config, _ = recipe_config("qwen2_5_vl_7b_geo3k_grpo_tor.sh", (), smoke, extra)
    assert config.actor_rollout_ref.actor.optim.lr == 3e-6
    assert config.tor.perception_weight == 0.75


def test_environment_knobs(tmp_path):
    knobs = {
        "MODEL_PATH": "/models/qwen7b",
        "N_GPUS_PER_NODE": "4",
        "NNODES": "2",
        "LOGGER": "console,wandb",
        "EXPERIMENT_NAME": "my_run",
    }
    [words] = dry_run_commands("qwen2_5_vl_7b_geo3k_grpo.sh", (), tmp_path, **knobs)
    _, _, _, overrides = main_ppo_command(words)
    config = apply_overrides(None, "ppo_trainer", overrides)
    run_dir = tmp_path / "runs" / "my_run"
    assert config.actor_rollout_ref.model.path == "/models/qwen7b"
    assert (config.trainer.n_gpus_per_node, config.trainer.nnodes) == (4, 2)
    assert list(config.trainer.logger) == ["console", "wandb", "file"]
    assert config.trainer.experiment_name == "my_run"
    assert config.trainer.default_local_dir == str(run_dir / "checkpoints")
    assert config.data.train_files == str(tmp_path / "data" / "geo3k" / "train.parquet")
    metrics_path = config.ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH
    assert re.fullmatch(re.escape(str(run_dir / "metrics")) + r"/\d{8}T\d{6}Z\.jsonl", metrics_path)
    # The datasets count what veRL's length filter removes into the run's run.json (verl_tor.launch.prompt_filter).
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.VERL_TOR_RUN_JSON == str(run_dir / "run.json")
    assert (config.data.custom_cls.path, config.data.custom_cls.name) == (
        "pkg://verl_tor.launch.prompt_filter",
        "FilterCountingRLHFDataset",
    )


def test_secrets_reach_ray_by_name_never_by_value(tmp_path):
    """WANDB_API_KEY and friends are forwarded to every Ray process (verl_tor.launch.ray_env) by naming them in the
    command's environment; their values are in neither the command nor its overrides (nor command.sh, which holds
    the same words)."""
    from verl_tor.launch.ray_env import forwarded_variables

    secrets = {"WANDB_API_KEY": "wandb-secret-0123", "HF_HOME": "/shared/hf"}
    [words] = dry_run_commands("qwen2_5_vl_7b_geo3k_grpo.sh", (), tmp_path, **secrets)
    environment = main_ppo_command(words)[0]
    assert environment == {"VERL_TOR_FORWARD_ENV": "WANDB_API_KEY,HF_HOME"}
    assert not any(value in word for value in secrets.values() for word in words)
    # Where main_ppo runs (the launching shell's environment plus the command's), exactly those values go to Ray.
    assert forwarded_variables({**secrets, "OTHER": "x", **environment}) == secrets
    [words] = dry_run_commands("qwen2_5_vl_7b_geo3k_grpo.sh", (), tmp_path)
    assert "VERL_TOR_FORWARD_ENV" not in main_ppo_command(words)[0]


def test_command_sh_is_the_command_that_ran_one_override_per_line(tmp_path):
    """``command.sh`` (and the DRY_RUN=1 print) is a valid shell command with one override per line, and its words
    are exactly the command the recipe ran: a stand-in interpreter records the arguments it was started with."""
    argv_file = tmp_path / "argv"
    interpreter = tmp_path / "python"
    interpreter.write_text(
        f'#!/bin/bash\nif [[ $1 == -c ]]; then exec {sys.executable} "$@"; fi\nprintf "%s\\0" "$@" > {argv_file}\n'
    )
    interpreter.chmod(0o755)
    env = {"PYTHON": str(interpreter), "PREFLIGHT": "0", "WANDB_API_KEY": "x"}
    ran = run_script("qwen2_5_vl_7b_geo3k_dapo_tor.sh", ("tor.perception_weight=0.75",), tmp_path, **env)
    assert ran.returncode == 0, ran.stderr
    run_dir = tmp_path / "runs" / "qwen2_5_vl_7b_geo3k_dapo_tor"
    assert json.loads((run_dir / "run.json").read_text())["sized_for"] == "8 x 80 GB"
    text = (run_dir / "command.sh").read_text()
    assert subprocess.run(["bash", "-n"], input=text, text=True, check=False).returncode == 0
    # The words bash reads from it (its own parse, continuations included).
    words = subprocess.run(
        ["bash", "-c", "printf '%s\\0' " + text], capture_output=True, text=True, check=True
    ).stdout.split("\0")[:-1]
    start = words.index(str(interpreter))
    assert words[:start] == ["env", "VERL_TOR_FORWARD_ENV=WANDB_API_KEY"]
    assert words[start + 1 :] == argv_file.read_text().split("\0")[:-1]
    lines = text.splitlines()
    assert lines[2] == f"  {interpreter} -m verl.trainer.main_ppo \\" and lines[-1] == "  tor.perception_weight=0.75"
    assert all(line.endswith(" \\") for line in lines[:-1]) and len(lines) == len(words) - 2
    dry = run_script("qwen2_5_vl_7b_geo3k_dapo_tor.sh", ("tor.perception_weight=0.75",), tmp_path, DRY_RUN="1", **env)
    assert [line for line in dry.stdout.splitlines() if "_FILE_LOGGER_PATH" not in line] == [
        line for line in lines if "_FILE_LOGGER_PATH" not in line
    ]


def test_preflight_runs_first_and_can_be_skipped(tmp_path):
    """A recipe stops before anything else when the preflight fails (here: no data under DATA_ROOT on a machine
    without GPUs), with one line per problem; PREFLIGHT=0 and DRY_RUN=1 skip it, SMOKE=1 keeps only the CPU checks."""
    failed = run_script("qwen2_5_vl_7b_geo3k_grpo.sh", ("trainer.total_training_steps=1",), tmp_path)
    assert failed.returncode != 0
    assert "preflight FAIL" in failed.stderr and "geo3k/train.parquet does not exist" in failed.stderr
    assert not (tmp_path / "runs").exists(), "nothing was written or started"
    assert run_script("eval.sh", ("Qwen/Qwen2.5-VL-7B-Instruct",), tmp_path).returncode != 0
    skipped = run_script("qwen2_5_vl_7b_geo3k_grpo.sh", (), tmp_path, PREFLIGHT="0", PYTHON="true")
    assert skipped.returncode == 0 and "preflight" not in skipped.stderr


# ------------------------------------------------------------------------- overrides veRL declares and reads

# Mappings veRL hands on whole, so keys below them belong to their consumer (the veRL code that reads each).
PASS_THROUGH = {
    "data.mm_processor_kwargs": "utils/dataset/rl_dataset.py: config.get('mm_processor_kwargs') to the processor",
    "reward.custom_reward_function.reward_kwargs": "trainer/ppo/reward.py get_custom_reward_fn: into every call",
    "actor_rollout_ref.model.override_config": "workers/config/model.py: HFModelConfig.override_config",
    "actor_rollout_ref.rollout.engine_kwargs": "rollout/vllm_rollout/vllm_async_server.py: engine_kwargs[backend]",
    "actor_rollout_ref.actor.fsdp_config.mixed_precision": "engine/fsdp/transformer_impl.py: mixed_precision.get",
    "actor_rollout_ref.ref.fsdp_config.mixed_precision": "engine/fsdp/transformer_impl.py: mixed_precision.get",
    "ray_kwargs.ray_init": "trainer/main_ppo.py run_ppo: ray.init(**ray_init)",
    "transfer_queue": "trainer/main_ppo.py TaskRunnerV1.run: tq.init(config.transfer_queue)",
}


@functools.cache
def _declared_tree(config_path: str | None, config_name: str) -> dict:
    # As written, interpolations and required (???) values included.
    return OmegaConf.to_container(_composed_base(config_path, config_name), resolve=False)


def declares(config_path: str | None, config_name: str, key: str) -> bool:
    """True when the composed config (veRL's, or ours on top of it) has ``key``, whatever its value."""
    node = _declared_tree(config_path, config_name)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@functools.cache
def names_verl_reads() -> frozenset[str]:
    """Every name veRL's installed source uses as an attribute, a string key or in an interpolation (``.name``,
    ``"name"``, ``'name'``; its tests excluded). A declaration (``name: …`` in a dataclass or YAML) is not a use."""
    use = re.compile(r"""[.'"]([A-Za-z_]\w*)""")
    names: set[str] = set()
    for path in VERL_ROOT.rglob("*"):
        if path.suffix in (".py", ".yaml") and "tests" not in path.relative_to(VERL_ROOT).parts:
            names.update(use.findall(path.read_text(errors="replace")))
    return frozenset(names)


@pytest.mark.parametrize(
    ("script", "args", "smoke"),
    RECIPE_CASES,
    ids=[" ".join((s, *a, "smoke" if k else "gpu")) for s, a, k in RECIPE_CASES],
)
def test_every_override_is_declared_and_used_by_verl(script, args, smoke, recipe_command):
    """A key veRL's installed config does not declare is an error (a `+key` only below a mapping veRL reads and
    passes on whole), and so is a declared key whose name veRL's source never uses: such an override changes nothing. This
    caught ``actor_rollout_ref.actor.freeze_vision_tower``, declared in veRL 0.9.1's actor config and read by
    nothing. The use check is by name, so it is necessary, not sufficient. ``tor.*`` is ours (verl_tor.config_checks)."""
    _, config_path, config_name, overrides = recipe_command(script, args, smoke)
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+")
        if key.split(".")[0] == "tor":
            continue
        under = next((prefix for prefix in PASS_THROUGH if key.startswith(prefix + ".")), None)
        if override.startswith("+"):
            assert under is not None, f"{key}: veRL 0.9.1's {config_name} does not declare it"
            # The mapping itself is read by veRL (reward_kwargs with .get, undeclared in its YAML).
            assert under.rsplit(".", 1)[-1] in names_verl_reads(), under
            continue
        assert declares(config_path, config_name, key), f"{key}: not declared by {config_name}"
        if under is None:
            assert key.rsplit(".", 1)[-1] in names_verl_reads(), f"{key}: declared by veRL 0.9.1 but used by nothing"


def test_the_use_check_sees_verls_reads():
    """The check above has teeth: names veRL reads are found, the unread one is not."""
    reads = names_verl_reads()
    assert {"clip_grad", "max_model_len", "val_batch_size", "entropy_from_logits_with_chunking"} <= reads
    assert "freeze_vision_tower" not in reads


def test_rows_of_verls_geo3k_example_grade_like_ours():
    """recipes/README.md: a parquet from veRL's examples/data_preprocess/geo3k.py (data_source hiyouga/geometry3k,
    extra_info without an answer type) is graded by our reward as our geo3k rows are; veRL's stock scorer, which
    picks by data_source, does not know our names."""
    from verl.utils.reward_score import default_compute_score

    from verl_tor.eval.rewards import compute_score

    gold = "3\\sqrt{3}"
    verl_row = {"split": "test", "index": 0, "answer": gold, "question": "<image>Find x."}
    ours = {"answer_type": "free_form"}
    for response, accuracy in [
        ("<think>27 = x^2</think> \\boxed{\\sqrt{27}}", 1.0),
        ("<think>guess</think> \\boxed{5}", 0.0),
        ("\\boxed{3\\sqrt{3}}", 1.0),
    ]:
        score = compute_score("hiyouga/geometry3k", response, gold, verl_row)
        graded_ours = compute_score("geo3k", response, gold, ours)
        assert score["row"] == "hiyouga/geometry3k:test:0"  # the row identity the evaluation grades by
        assert {k: v for k, v in score.items() if k != "row"} == {k: v for k, v in graded_ours.items() if k != "row"}
        assert score["acc"] == accuracy, response
    with pytest.raises(NotImplementedError):
        default_compute_score("geo3k", "\\boxed{5}", gold)


# ------------------------------------------------------------------------------------- what vLLM is sized for


def test_vllm_engine_gets_the_recipes_budget(recipe_config, tmp_path):
    """The recipe's context (prompt + response), images per prompt (one, no video) and largest image reach the
    engine arguments that veRL's own vLLM server code builds (tests/vllm_engine_args.py runs it without vLLM);
    with veRL's defaults vLLM would size itself for the model's 128,000-token context and 999 images and videos."""
    configs = {
        "train": recipe_config("qwen2_5_vl_7b_geo3k_dapo_tor.sh", (), False)[0],
        "virl39k": recipe_config("qwen2_5_vl_7b_virl39k_dapo_tor.sh", (), False)[0],
        "eval": recipe_config("eval.sh", ("Qwen/Qwen2.5-VL-7B-Instruct",), False)[0],
        "verl_default": apply_overrides(None, "ppo_trainer", ["actor_rollout_ref.rollout.name=vllm"]),
    }
    files = []
    for name, config in configs.items():
        OmegaConf.resolve(config)
        OmegaConf.save(config.actor_rollout_ref.rollout, tmp_path / f"{name}.yaml")
        files.append(str(tmp_path / f"{name}.yaml"))
    probe = [sys.executable, str(REPO / "tests" / "vllm_engine_args.py"), "128000", *files]
    done = subprocess.run(
        probe, capture_output=True, text=True, timeout=300, env={**os.environ, "VERL_PLATFORM": "cpu"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    built = dict(zip(configs, json.loads(done.stdout.strip().splitlines()[-1]), strict=True))
    for name in ("train", "virl39k", "eval"):
        data, args = configs[name].data, built[name]["engine_args"]
        assert args["max_model_len"] == data.max_prompt_length + data.max_response_length, name
        assert args["limit_mm_per_prompt"] == {"image": 1, "video": 0}, name
        assert args["mm_processor_kwargs"] == dict(data.mm_processor_kwargs), name
        cli = built[name]["cli"]
        assert cli[cli.index("--limit_mm_per_prompt") + 1] == '{"image": 1, "video": 0}'
    # The evaluation's context is the harness's: 6,144 prompt + 2,048 response tokens.
    assert [configs[name].data.max_prompt_length for name in ("train", "virl39k", "eval")] == [2048, 8192, 6144]
    assert built["verl_default"]["engine_args"]["max_model_len"] == 128000
    assert "limit_mm_per_prompt" not in built["verl_default"]["engine_args"]


EVAL_CASES = [(protocol, image) for protocol in ("tor", "avg8") for image in ("present", "removed")]


@pytest.mark.parametrize(("protocol", "image"), EVAL_CASES, ids=[f"{p}-{i}" for p, i in EVAL_CASES])
def test_eval_protocols(protocol, image, tmp_path, tiny_model_dirs):
    """EVAL_PROTOCOL=tor: the harness's greedy decoding, pixel range, context and system prompt; avg8: eight
    samples at T = 1 with the training pixel range; IMAGE=removed: the image-free dataset class. Each command passes
    the checks main_ppo makes, with vLLM sized for inference."""
    words = dry_run_commands("eval.sh", ("Qwen/Qwen2.5-VL-7B-Instruct",), tmp_path, EVAL_PROTOCOL=protocol, IMAGE=image)
    [command] = [w for w in words if "verl.trainer.main_ppo" in w]
    config = apply_overrides(None, "ppo_trainer", main_ppo_command(command)[3])
    val, rollout = config.actor_rollout_ref.rollout.val_kwargs, config.actor_rollout_ref.rollout
    tor = protocol == "tor"
    assert (val.do_sample, val.temperature, val.n) == ((False, 0, 1) if tor else (True, 1.0, 8))
    assert config.data.val_batch_size * val.n == 2048
    assert tuple(config.data.mm_processor_kwargs.values()) == ((262144, 1000000) if tor else PIXEL_RANGES["qwen2_5_vl"])
    assert dict(rollout.engine_kwargs.vllm.mm_processor_kwargs) == dict(config.data.mm_processor_kwargs)
    assert config.data.max_prompt_length + config.data.max_response_length == (8192 if tor else 10240)
    assert (rollout.tensor_model_parallel_size, rollout.gpu_memory_utilization) == (1, 0.85)
    assert config.actor_rollout_ref.actor.fsdp_config.param_offload
    names = {("tor", "present"): "HarnessPromptDataset", ("tor", "removed"): "HarnessPromptImageRemovedDataset"}
    names |= {("avg8", "present"): "FilterCountingRLHFDataset", ("avg8", "removed"): "ImageRemovedDataset"}
    assert config.data.custom_cls.name == names[protocol, image]
    assert config.trainer.val_only and config.trainer.val_before_train
    benchmarks = [Path(path).parent.name for path in config.data.val_files]
    assert benchmarks == ["mathverse", "mathvision", "mathvista", "wemath", "hallusionbench"]
    folder = f"model_{protocol}" + ("_noimage" if image == "removed" else "")
    eval_dir = tmp_path / "runs" / "eval_Qwen2.5-VL-7B-Instruct" / "eval" / folder
    assert config.trainer.validation_data_dir == str(eval_dir / "generations")
    check_like_main_ppo(config, tiny_model_dirs["qwen2_5_vl"])


def test_eval_both_protocols_and_checkpoint_merge(tmp_path, checkpoint_dir):
    commands = dry_run_commands("eval.sh", (checkpoint_dir,), tmp_path, EVAL_PROTOCOL="both")
    actor = Path(checkpoint_dir) / "actor"
    merge = ["-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir", str(actor), "--target_dir"]
    assert [words[1:] for words in commands if "verl.model_merger" in words][0] == merge + [str(actor / "merged_hf")]
    runs = [words for words in commands if "verl.trainer.main_ppo" in words]
    for words, protocol in zip(runs, ("tor", "avg8"), strict=True):
        config = apply_overrides(None, "ppo_trainer", main_ppo_command(words)[3])
        assert config.actor_rollout_ref.model.path == str(actor / "merged_hf")
        eval_dir = Path(checkpoint_dir).parents[1] / "eval" / f"global_step_60_{protocol}"
        assert config.trainer.validation_data_dir == str(eval_dir / "generations")
    assert len(runs) == 2


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {}, "usage: bash recipes/eval.sh"),
        (("m",), {"EVAL_PROTOCOL": "greedy"}, "EVAL_PROTOCOL must be tor, avg8 or both, got 'greedy'"),
        (("m",), {"EVAL_MODE": "greedy"}, "EVAL_MODE is now EVAL_PROTOCOL"),
        (("m",), {"IMAGE": "none"}, "IMAGE must be present or removed"),
        (("{runs}/grpo/checkpoints/global_step_6",), {}, "no such checkpoint or model folder: {runs}/grpo/checkpoints"),
        (("Qwen/Qwen2-VL-7B-Instruct",), {}, "as a hub id it is no model of the table"),
        (("{runs}",), {}, "set RECIPE_MODEL to the row {runs} is a copy or checkpoint of"),
    ],
)
def test_eval_refusals_name_the_setting(args, env, message, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    refused = run_script("eval.sh", tuple(a.format(runs=runs) for a in args), tmp_path, DRY_RUN="1", **env)
    assert refused.returncode != 0 and message.format(runs=runs) in refused.stderr, refused.stderr
    # RECIPE_MODEL names the row of a model folder outside the table.
    if args == ("{runs}",):
        found = run_script("eval.sh", (str(runs),), tmp_path, DRY_RUN="1", RECIPE_MODEL="Qwen/Qwen3-VL-8B-Instruct")
        assert found.returncode == 0 and "max_pixels=1306122" in found.stdout  # 1,000,000 x 1,024 / 784


# -------------------------------------------------------------------------------------------- one-GPU smoke


def _leaves(config: DictConfig) -> dict[str, object]:
    def walk(node, prefix):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            yield from walk(value, path) if isinstance(value, dict) else [(path, value)]

    return dict(walk(OmegaConf.to_container(config, resolve=True), ""))


def test_gpu_smoke_is_the_3b_grpo_tor_recipe_on_one_gpu(recipe_config):
    """``make gpu-smoke`` runs the 3B GRPO + ToR recipe's command with only sizes, steps, validation, checkpoints,
    GPU count and the CPU offload policy changed (veRL's own checks of it: test_recipe_config_is_valid_for_verl)."""
    smoke, recipe = (
        _leaves(recipe_config(script, (), False)[0]) for script in (GPU_SMOKE, "qwen2_5_vl_3b_geo3k_grpo_tor.sh")
    )
    changed = {key for key in smoke.keys() | recipe.keys() if smoke.get(key) != recipe.get(key)}
    env = "ray_kwargs.ray_init.runtime_env.env_vars."
    assert changed == {
        "data.train_batch_size",
        "actor_rollout_ref.rollout.n",
        "actor_rollout_ref.actor.ppo_mini_batch_size",
        "data.train_max_samples",
        "data.val_max_samples",
        "trainer.total_training_steps",
        "trainer.val_before_train",
        "trainer.save_freq",
        "actor_rollout_ref.actor.fsdp_config.offload_policy",
        "trainer.n_gpus_per_node",
        "actor_rollout_ref.rollout.n_gpus_per_node",
        # veRL's interpolations of the above.
        "actor_rollout_ref.actor.rollout_n",
        "actor_rollout_ref.ref.rollout_n",
        "critic.rollout_n",
        "critic.ppo_mini_batch_size",
        "actor_rollout_ref.rollout.trace.experiment_name",
        # Where the run writes (its name).
        "trainer.experiment_name",
        "trainer.default_local_dir",
        env + "VERL_FILE_LOGGER_PATH",
        env + "VERL_TOR_RUN_JSON",
    }, changed
    assert smoke["trainer.n_gpus_per_node"] == 1 and smoke["trainer.total_training_steps"] == 5
    assert smoke["actor_rollout_ref.rollout.name"] == "vllm" and smoke["actor_rollout_ref.model.use_remove_padding"]
    assert smoke["actor_rollout_ref.model.override_config.attn_implementation"] == "flash_attention_2"
    assert smoke["trainer.test_freq"] == 5 and smoke["tor.enable"]


def _write_metrics(run_dir: Path, steps: dict[int, dict[str, float]]) -> None:
    (run_dir / "metrics").mkdir(parents=True)
    lines = [json.dumps({"step": step, "data": data}) for step, data in steps.items()]
    (run_dir / "metrics" / "20260101T000000Z.jsonl").write_text("\n".join(lines) + "\n")


def test_smoke_summary_reports_steps_memory_and_tor(tmp_path, capsys):
    from verl_tor.launch.smoke_summary import main

    tor = {"tor/reasoning_fraction": 0.3, "tor/perception_fraction": 0.25, "tor/overlap_fraction": 0.1}
    steps = {
        1: {"timing_s/step": 100.0, "actor/perf/max_memory_allocated_gb": 20.0, **tor},
        2: {"timing_s/step": 40.0, "actor/perf/max_memory_allocated_gb": 31.5, **tor},
        3: {"timing_s/step": 60.0, "actor/perf/max_memory_allocated_gb": 25.0, **tor, "tor/mean_weight": 0.4}
        | {"val-core/geo3k/acc/mean@1": 0.375},
    }
    _write_metrics(tmp_path / "run", steps)
    assert main([str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "mean step time after the first step: 50.0 s over 2 steps" in out
    assert "peak max_memory_allocated_gb over the run: 31.5" in out and "tor/mean_weight = 0.4" in out
    assert "validation step 3: geo3k acc mean@1 = 0.375" in out
    # A run without ToR's metrics, or without a training step, is a failed smoke.
    _write_metrics(tmp_path / "plain", {1: {"timing_s/step": 1.0}})
    assert main([str(tmp_path / "plain")]) == 1 and "no tor/* metric at step 1" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 1 and "no training step" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- end to end


def _launch(script: str, args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``SMOKE=1 bash recipes/<script>`` with a private, short Ray temp dir (Ray's socket paths are
    length-limited), removed afterwards."""
    ray_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    try:
        return subprocess.run(
            ["timeout", str(SMOKE_RUN_TIMEOUT_S), "bash", str(RECIPES / script), *args]
            + [f"+ray_kwargs.ray_init._temp_dir={ray_dir}"],
            env={**os.environ, "PYTHON": sys.executable, "SMOKE": "1", "OUTPUT_DIR": str(tmp_path / "runs"), **env},
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
        )
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> dict:
    """The 7B Geometry3K DAPO + ToR recipe with SMOKE=1 (DAPO's group filter and ToR in one step), then
    ``eval.sh`` with SMOKE=1 on its step-1 checkpoint (merged by veRL's model merger), with the image and with
    IMAGE=removed."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    run_dir = tmp_path / "runs" / "qwen2_5_vl_7b_geo3k_dapo_tor_smoke"
    train = _launch("qwen2_5_vl_7b_geo3k_dapo_tor.sh", [], tmp_path)
    evaluation = no_image = None
    if train.returncode == 0:
        checkpoint = [str(run_dir / "checkpoints" / "global_step_1")]
        evaluation = _launch("eval.sh", checkpoint, tmp_path)
        no_image = _launch("eval.sh", checkpoint, tmp_path, IMAGE="removed")
    return {"dir": run_dir, "train": train, "eval": evaluation, "no_image": no_image}


def _read_metrics(folder: Path) -> dict[int, dict]:
    steps: dict[int, dict] = {}
    for path in sorted((folder / "metrics").glob("*.jsonl")):
        for entry in map(json.loads, path.read_text().splitlines()):
            steps.setdefault(entry["step"], {}).update(entry["data"])
    return steps


@pytest.mark.e2e
def test_smoke_recipe_trains_one_step(smoke_run):
    assert smoke_run["train"].returncode == 0, smoke_run["train"].stdout[-5000:] + smoke_run["train"].stderr[-5000:]
    steps = _read_metrics(smoke_run["dir"])
    assert sorted(steps) == [0, 1]
    step = steps[1]
    for name in ("actor/pg_loss", "critic/score/mean", "response_length/mean", "timing_s/step", "timing_s/gen"):
        assert name in step, name
    for name in ("tor/reasoning_fraction", "tor/perception_fraction", "tor/overlap_fraction", "tor/mean_weight"):
        assert name in step, name
    # At most ⌈0.3 N⌉ of the N response tokens each (0.3125 of 64 tokens, say).
    assert 0 < step["tor/reasoning_fraction"] < 0.35 and 0 < step["tor/perception_fraction"] < 0.35
    # DAPO's filter kept only groups whose accuracy differs between responses.
    assert 0 < step["critic/score/mean"] < 1
    assert "val-core/verl_tor/colour/acc/mean@1" in steps[0] and "val-core/verl_tor/colour/acc/mean@1" in step
    info = json.loads((smoke_run["dir"] / "run.json").read_text())
    assert (info["label"], info["recipe_model"], info["train_set"], info["smoke"]) == (
        "DAPO + ToR",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "geo3k",
        "1",
    )
    assert (smoke_run["dir"] / "checkpoints" / "global_step_1" / "actor").is_dir()
    # The TaskRunner recorded what veRL's length filter removed (the synthetic prompts all fit).
    counted = info["prompt_filter"]
    assert (counted["train"]["rows_before"], counted["train"]["removed"]) == (32, 0)
    assert (counted["validation"]["rows_before"], counted["validation"]["removed"]) == (4, 0)


@pytest.mark.e2e
@pytest.mark.parametrize("image", ["present", "removed"])
def test_smoke_eval_of_the_checkpoint(smoke_run, image):
    """Both evaluations ran EVAL_PROTOCOL=tor, and veRL's dump names each response's row (the key our reward
    returns), one greedy sample per validation row."""
    evaluation = smoke_run["eval" if image == "present" else "no_image"]
    assert evaluation is not None and evaluation.returncode == 0, evaluation and evaluation.stderr[-5000:]
    merged = smoke_run["dir"] / "checkpoints" / "global_step_1" / "actor" / "merged_hf"
    assert (merged / "config.json").is_file() and (merged / "model.safetensors").is_file()
    eval_dir = smoke_run["dir"] / "eval" / ("global_step_1_tor" + ("_noimage" if image == "removed" else ""))
    steps = _read_metrics(eval_dir)
    assert list(steps) == [0] and "val-core/verl_tor/colour/acc/mean@1" in steps[0]
    info = json.loads((eval_dir / "run.json").read_text())
    assert (info["protocol"], info["image"]) == ("tor", image)
    [dump] = (eval_dir / "generations").glob("*.jsonl")
    samples = [json.loads(line) for line in dump.read_text().splitlines()]
    assert sorted(sample["row"] for sample in samples) == [f"verl_tor/colour:val:{i}" for i in range(4)]
    # The harness's system prompt reached the model (the dump decodes the prompt, special tokens skipped).
    assert all(sample["input"].startswith("system\nYou FIRST think about the reasoning") for sample in samples)


@pytest.mark.e2e
def test_report_and_comparison_of_the_smoke_evaluations(smoke_run, tmp_path):
    """The report with a judge on the loopback (grading as the harness), the accuracy without the image, and the
    paired comparison of the two smoke evaluations."""
    import pandas as pd
    from eval_fixtures import fake_judge

    from verl_tor.eval import compare
    from verl_tor.eval.report import main

    assert smoke_run["eval"] is not None and smoke_run["eval"].returncode == 0
    assert smoke_run["no_image"] is not None and smoke_run["no_image"].returncode == 0
    with_image = smoke_run["dir"] / "eval" / "global_step_1_tor"
    judge = ["--judge-model", "fake-judge", "--judge-cache", str(tmp_path / "judge.sqlite3")]
    # A judge that reads the most frequent answer in every response: the harness's grading (extraction, then the
    # rule on it) is then right exactly on the rows with that answer.
    data = json.loads((with_image / "run.json").read_text())["val_files"]
    truths = [row["ground_truth"] for row in pd.read_parquet(data)["reward_model"]]
    colour = max(set(truths), key=truths.count)
    with fake_judge(extraction=colour) as (url, handler):
        main([str(smoke_run["dir"]), "--out", str(tmp_path / "results.md"), "--judge-url", url, *judge])
        # At most one call per row and evaluation: responses the same to the letter (the four image-free prompts
        # are the same text) share their cached extraction.
        assert 1 <= sum(handler.requests.values()) <= 8
    report = (tmp_path / "results.md").read_text()
    accuracies = report.split("## Accuracy (%) with and without the image")[0]
    judged = [line for line in accuracies.splitlines() if "graded as ToR's harness by judge fake-judge" in line]
    expected = f"{100 * truths.count(colour) / len(truths):.1f}"
    assert len(judged) == 2 and all(line.split("|")[-2].strip() == expected for line in judged)
    accuracy = _read_metrics(with_image)[0]["val-core/verl_tor/colour/acc/mean@1"]
    ours = [
        line
        for line in accuracies.splitlines()
        if line.startswith("| DAPO + ToR | ours (SMOKE): qwen2_5_vl_7b_geo3k_dapo_tor_smoke, global_step_1 |")
    ]
    assert len(ours) == 1 and ours[0].split("|")[-2].strip() == f"{100 * accuracy:.1f}"
    assert "| DAPO + ToR | paper (7B, Geometry3K, LLM judge) | 53.4 | 27.9 | 72.6 | 72.1 | 71.8 | 59.56 |" in report
    assert "## Accuracy (%) with and without the image" in report
    assert (tmp_path / "results_curves.png").stat().st_size > 10_000
    # The two smoke evaluations compared item by item (rule-based grades).
    out = tmp_path / "compare.md"
    compare.main([str(with_image), str(with_image.with_name("global_step_1_tor_noimage")), "--out", str(out)])
    table = out.read_text()
    assert "### DAPO + ToR (global_step_1_tor_noimage) − DAPO + ToR (global_step_1_tor)" in table
    row = next(line for line in table.splitlines() if line.startswith("| verl_tor/colour |"))
    assert row.split("|")[7:9] == [" McNemar exact ", " 4 "]


def test_cpu_reference_model_is_not_pinned():
    """GRPO recipes load a reference model, which veRL's FSDP2 engine always offloads with pinned memory; pinning
    needs CUDA, so under SMOKE=1 the CPU platform keeps the offload policy but unpinned."""
    from verl.workers.engine.fsdp import transformer_impl

    assert transformer_impl.CPUOffloadPolicy.__wrapped__(pin_memory=True).pin_memory  # veRL's call pins
    assert transformer_impl.CPUOffloadPolicy(pin_memory=True).pin_memory is False


@pytest.mark.e2e
def test_smoke_grpo_baseline_with_kl_and_reference_model(tmp_path):
    """The stock-veRL GRPO baseline with SMOKE=1: KL loss against a reference model, veRL's own sync trainer."""
    result = _launch("qwen2_5_vl_7b_geo3k_grpo.sh", [], tmp_path)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    steps = _read_metrics(tmp_path / "runs" / "qwen2_5_vl_7b_geo3k_grpo_smoke")
    assert sorted(steps) == [0, 1]
    for name in ("actor/kl_loss", "actor/kl_coef", "timing_s/ref", "actor/pg_loss"):
        assert name in steps[1], name
    assert steps[1]["actor/kl_coef"] == 0.01
    assert not any(name.startswith("tor/") for name in steps[1])


@pytest.mark.parametrize("model", ["qwen3_vl_4b", "qwen2_5_vl_7b"])
def test_method_comparison_arms_differ_only_in_the_method(model, recipe_config):
    """The controlled comparison: every ``<model>_geo3k_compare_<method>.sh`` composes the same veRL config but for
    ``tor.method`` (and the run's own name and folders), and every registered preset has an arm."""
    from verl_tor.methods.registry import METHODS

    arms = {method: _leaves(recipe_config(f"{model}_geo3k_compare_{method}.sh", (), False)[0]) for method in METHODS}
    run_specific = ("trainer.experiment_name", "trainer.default_local_dir", "ray_kwargs.ray_init.runtime_env")
    run_specific += ("actor_rollout_ref.rollout.trace.experiment_name",)
    reference = arms["grpo"]
    for method, leaves in arms.items():
        assert leaves["tor.method"] == method and leaves["trainer.v1.trainer_mode"] == "tor_sync"
        differing = {key for key in reference.keys() | leaves.keys() if reference.get(key) != leaves.get(key)}
        assert {key for key in differing if not key.startswith(run_specific)} <= {"tor.method"}, method
