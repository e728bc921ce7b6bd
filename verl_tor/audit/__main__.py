"""``python -m verl_tor.audit MODEL DATA [--methods tor,grpo] [--prompts N] [--n K] [--out DIR] [--cpu]``.

Checks the inputs (fast, before Ray or a model exists), builds veRL's ``main_ppo`` command in trainer mode
``tor_audit`` and runs it into a temporary folder next to DIR, which becomes DIR only when the audit is complete.

The command's settings come, later ones winning, from:

- ``--cpu``: :func:`verl_tor.testing.cpu_overrides.cpu_overrides` (the tiny-model CPU runs, the ``hf`` rollout);
  ``--recipe R``: the exact command recipe ``R`` would run (``DRY_RUN=1 bash R``: its model, data, reward, rollout
  and sampling settings, ``SMOKE=1`` included); otherwise a single-node GPU command with veRL's vLLM rollout;
- the audit's own: one step of ``--prompts`` × ``--n`` responses, no update, checkpoint, validation or resume, no
  reference model (the KL term changes no token's score), no DAPO group filtering (every sampled group is shown);
- anything after ``--``, as Hydra overrides (e.g. ``tor.perception_quantile=0.2``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import verl_tor
from verl_tor.audit import AUDIT_HTML, AUDIT_JSON
from verl_tor.audit.methods import DEFAULT_METHODS, resolve_methods

TOR_CONFIG_DIR = os.path.join(os.path.dirname(verl_tor.__file__), "config")
WEIGHT_FILES = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin")


class AuditInputError(ValueError):
    """An input the audit cannot use; the message names it and what to do."""


def check_model(model: str) -> str:
    """The model's ``model_type`` after checking it is a supported multimodal model (a folder or a hub name)."""
    from verl_tor.counterfactual.families import family_of_model_type, supported_model_types

    if os.path.isdir(model):
        if os.path.isdir(os.path.join(model, "actor")) and os.path.basename(model.rstrip("/")).startswith(
            "global_step"
        ):
            raise AuditInputError(
                f"{model} is a veRL checkpoint step, not a model: pass {os.path.join(model, 'actor', 'huggingface')}"
                " (saved with actor.checkpoint.save_contents including hf_model) or a merged model "
                "(python -m verl.model_merger merge --backend fsdp --local_dir <step>/actor --target_dir DIR)"
            )
        config_path = os.path.join(model, "config.json")
        if not os.path.isfile(config_path):
            raise AuditInputError(f"{model} is not a model: it has no config.json")
        if not any(glob.glob(os.path.join(model, pattern)) for pattern in WEIGHT_FILES):
            hint = ""
            if os.path.basename(model.rstrip("/")) == "huggingface":
                hint = (
                    ": veRL wrote only the config and tokenizer here; save checkpoints with "
                    "actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model], or merge this "
                    "step (python -m verl.model_merger merge --backend fsdp --local_dir <step>/actor --target_dir DIR)"
                )
            raise AuditInputError(f"{model} is not a model: it has a config.json but no weights{hint}")
        with open(config_path, encoding="utf-8") as f:
            model_type = json.load(f).get("model_type")
    else:
        from transformers import AutoConfig

        try:
            model_type = AutoConfig.from_pretrained(model).model_type
        except (OSError, ValueError) as error:
            raise AuditInputError(
                f"{model} is neither a model folder nor a model the hub cache holds: {error}"
            ) from None
    if family_of_model_type(model_type) is None:
        raise AuditInputError(
            f"{model} is a {model_type!r} model; the audit's counterfactual passes support the model types "
            f"{', '.join(supported_model_types())}"
        )
    return model_type


def data_file(data: str) -> str:
    """The parquet file to audit: ``DATA`` itself, or ``DATA/train.parquet``."""
    path = os.path.join(data, "train.parquet") if os.path.isdir(data) else data
    if not os.path.isfile(path):
        raise AuditInputError(
            f"no data at {path}: pass a parquet file in veRL's RL format or a folder with train.parquet"
        )
    return os.path.abspath(path)


def check_data(path: str, image_key: str = "images") -> dict:
    """The first row of the dataset at ``path``, after checking that its rows hold images; raises naming the file."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a file that is not parquet
        raise AuditInputError(f"{path} is not a parquet file: {error}") from None
    missing = [column for column in ("prompt", image_key) if column not in table.column_names]
    if missing:
        raise AuditInputError(
            f"{path} has no column {' or '.join(missing)}: the audit compares how methods treat image-dependent "
            f"tokens, so it needs veRL's multimodal RL format (prompt, {image_key}); columns: {table.column_names}"
        )
    rows = table.slice(0, 256).to_pylist()
    if not any(row.get(image_key) for row in rows):
        raise AuditInputError(f"{path}: none of its first {len(rows)} rows has an image (column {image_key!r})")
    return rows[0]


def default_reward(first_row: dict, cpu: bool) -> list[str]:
    """The reward function of the data: the demo task's, the CPU colour task's, or the recipes' (GPU)."""
    from verl_tor.demo.task import DATA_SOURCE

    module = "verl_tor.eval.rewards"
    if first_row.get("data_source") == DATA_SOURCE:
        module = "verl_tor.demo.task"
    elif cpu:
        module = "verl_tor.testing.colour_reward"
    return [f"reward.custom_reward_function.path=pkg://{module}", "reward.custom_reward_function.name=compute_score"]


def recipe_command(recipe: str) -> tuple[dict[str, str], list[str]]:
    """``(environment, main_ppo arguments)`` of the command ``recipe`` would run (``DRY_RUN=1``, no preflight)."""
    env = {**os.environ, "DRY_RUN": "1", "PREFLIGHT": "0", "PYTHON": sys.executable}
    done = subprocess.run(["bash", recipe], capture_output=True, text=True, env=env, timeout=300)
    if done.returncode != 0:
        raise AuditInputError(f"DRY_RUN=1 bash {recipe} failed:\n{done.stderr[-2000:]}")
    # The recipes print one override per line with backslash continuations.
    words = shlex.split(done.stdout.replace("\\\n", " "))
    if "verl.trainer.main_ppo" not in words:
        raise AuditInputError(f"{recipe} does not print a main_ppo command under DRY_RUN=1: {words[:6]}")
    start = words.index("verl.trainer.main_ppo") + 1
    assignments = [w for w in words[: start - 2] if "=" in w and w != "env"]
    return dict(w.split("=", 1) for w in assignments), words[start:]


def gpu_overrides(model: str, data: str, out: str, gpus: int, response_length: int) -> list[str]:
    """A single-node GPU run with veRL's vLLM rollout (``--recipe`` reuses a recipe's settings instead)."""
    return [
        f"actor_rollout_ref.model.path={model}",
        f"data.train_files={data}",
        f"data.val_files={data}",
        "data.max_prompt_length=4096",
        f"data.max_response_length={response_length}",
        "data.filter_overlong_prompts=true",
        f"trainer.n_gpus_per_node={gpus}",
        "trainer.nnodes=1",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.model.use_remove_padding=true",
        "actor_rollout_ref.actor.use_dynamic_bsz=true",
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384",
        "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=16384",
        "actor_rollout_ref.rollout.name=vllm",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.6",
        f"actor_rollout_ref.rollout.max_model_len={4096 + response_length}",
        f"trainer.default_local_dir={os.path.join(out, 'checkpoints')}",
    ]


def audit_overrides(methods: list[str], prompts: int, n: int, out: str, seed: int | None) -> list[str]:
    """What makes any main_ppo command the audit (module doc)."""
    overrides = [
        "trainer.v1.trainer_mode=tor_audit",
        f"+tor_audit.out={out}",
        f"+tor_audit.methods=[{','.join(methods)}]",
        f"data.train_batch_size={prompts}",
        f"actor_rollout_ref.rollout.n={n}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={prompts}",
        "trainer.total_training_steps=1",
        "trainer.save_freq=-1",
        "trainer.test_freq=-1",
        "trainer.val_before_train=false",
        "trainer.resume_mode=disable",
        f"trainer.default_local_dir={os.path.join(out, 'checkpoints')}",
        "trainer.logger=[console]",
        "trainer.experiment_name=audit",
        "actor_rollout_ref.actor.use_kl_loss=false",
        "algorithm.use_kl_in_reward=false",
        "algorithm.filter_groups.enable=false",
        "tor.enable=true",
    ]
    if seed is not None:
        overrides += [f"data.seed={seed}", f"actor_rollout_ref.rollout.seed={seed}"]
    return overrides


def with_tor_config(arguments: list[str]) -> list[str]:
    """``arguments`` with ToR's config (veRL's ``ppo_trainer`` plus the ``tor:`` section) selected."""
    kept = [a for a in arguments if not a.startswith(("--config-path", "--config-name"))]
    return ["--config-path", TOR_CONFIG_DIR, "--config-name", "tor_trainer", *kept]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.audit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", help="HF model folder or hub name (a checkpoint's actor/huggingface too)")
    parser.add_argument("data", nargs="?", help="parquet file in veRL's RL format, or a folder with train.parquet")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated (default %(default)s)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts in the batch (default %(default)s)")
    parser.add_argument("--n", type=int, default=None, help="responses per prompt (default: the recipe's, else 4)")
    parser.add_argument("--out", help="output folder, must not exist (default outputs/audit/<time>)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU with the hf rollout (tiny models)")
    parser.add_argument("--recipe", help="reuse this recipe's model, data, reward and rollout settings")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs on this node (default: all torch sees)")
    parser.add_argument("--response-length", type=int, default=None, help="max response tokens (CPU 8, GPU 2048)")
    parser.add_argument("--seed", type=int, default=None, help="data and rollout seed")
    parser.epilog = "Hydra overrides after -- are appended last, e.g. -- tor.perception_quantile=0.2"
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: len(argv) - len(overrides) - (1 if "--" in argv else 0)])
    args.overrides = overrides
    if args.recipe is None and (args.model is None or args.data is None):
        parser.error("MODEL and DATA are required (or --recipe)")
    if args.prompts < 1 or (args.n is not None and args.n < 1):
        parser.error("--prompts and --n must be at least 1")
    return args


def build_command(args: argparse.Namespace, work: str) -> tuple[list[str], dict[str, str]]:
    """The checked ``main_ppo`` command of the audit writing into ``work``, and its environment."""
    from verl_tor.testing.cpu_overrides import cpu_env, cpu_overrides

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        resolve_methods(methods)
    except ValueError as error:
        raise AuditInputError(f"--methods: {error}") from None
    env = dict(os.environ)
    arguments: list[str] = []
    n = args.n or 4
    if args.recipe:
        recipe_env, arguments = recipe_command(args.recipe)
        env.update(recipe_env)
        if args.n is None:
            n = int(_last_value(arguments, "actor_rollout_ref.rollout.n") or 4)
    model = args.model or _last_value(arguments, "actor_rollout_ref.model.path")
    # Ray's workers need not share this working directory: local paths go in absolute.
    model = os.path.abspath(model) if os.path.isdir(model) else model
    data = data_file(args.data) if args.data else _last_value(arguments, "data.train_files")
    check_model(model)
    first_row = check_data(data, _last_value(arguments, "data.image_key") or "images")
    if args.recipe is None:
        if args.cpu:
            env.update(cpu_env())
            arguments = cpu_overrides(
                model, os.path.dirname(data), work, steps=1, response_length=args.response_length or 8
            )
            arguments += [f"data.train_files={data}", f"data.val_files={data}"]
        else:
            arguments = gpu_overrides(model, data, work, args.gpus or _visible_gpus(), args.response_length or 2048)
        arguments += default_reward(first_row, args.cpu)
    else:
        arguments += [f"actor_rollout_ref.model.path={model}", f"data.train_files={data}"]
        if args.response_length:
            arguments.append(f"data.max_response_length={args.response_length}")
    arguments += audit_overrides(methods, args.prompts, n, work, args.seed) + list(args.overrides)
    return [sys.executable, "-m", "verl.trainer.main_ppo", *with_tor_config(arguments)], env


def _last_value(arguments: list[str], key: str) -> str | None:
    """The value the last ``key=`` (or ``+key=``) override gives, or None."""
    values = [a.split("=", 1)[1] for a in arguments if a.lstrip("+").startswith(key + "=")]
    return values[-1] if values else None


def _visible_gpus() -> int:
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise AuditInputError("no GPU is visible: run with --cpu (tiny models) or on a GPU node")
    return count


def run_audit(command: list[str], env: dict[str, str], work: str, out: str) -> None:
    """Run the audit into ``work`` (progress bar), then rename it to ``out``; on failure remove ``work``."""
    from verl_tor.demo.run import run_phase

    os.makedirs(os.path.join(work, "checkpoints"))
    with open(os.path.join(work, "command.sh"), "w", encoding="utf-8") as f:
        f.write(" ".join(shlex.quote(word) for word in command) + "\n")
    try:
        run_phase(
            "audit (veRL main_ppo, one step, no update)",
            command,
            env,
            os.path.join(work, "main_ppo.log"),
            1,
            lambda: (int(os.path.exists(os.path.join(work, AUDIT_JSON))), {}),
        )
        if not os.path.exists(os.path.join(work, AUDIT_JSON)):
            raise RuntimeError(f"main_ppo finished without writing {AUDIT_JSON}; log {work}/main_ppo.log")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(os.path.join(work, "checkpoints"), ignore_errors=True)
    os.rename(work, out)


def _exit_on_sigterm(signum: int, _frame) -> None:
    # SystemExit unwinds through run_phase, which stops main_ppo's process group and the Ray cluster it started.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> str:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    out = os.path.abspath(args.out or os.path.join("outputs", "audit", time.strftime("%Y%m%d-%H%M%S")))
    if os.path.exists(out):
        sys.exit(f"python -m verl_tor.audit: {out} exists; choose another --out")
    work = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.partial-{os.getpid()}")
    try:
        command, env = build_command(args, work)
    except AuditInputError as error:
        sys.exit(f"python -m verl_tor.audit: {error}")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    try:
        run_audit(command, env, work, out)
    except RuntimeError as error:
        sys.exit(f"python -m verl_tor.audit: {error}")
    print(f"audit written to {out}: {AUDIT_JSON}, {AUDIT_HTML}")
    return out


if __name__ == "__main__":
    main()
