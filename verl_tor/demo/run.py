"""The CPU demo: GRPO vs GRPO+ToR with veRL's real ``main_ppo`` on a tiny Qwen2.5-VL and a colour task.

Pipeline (every training phase is a veRL entry point in its own process, shown as a progress bar):

1. data: the synthetic colour task (:mod:`verl_tor.testing.synthetic_data`; reward 1 only for the right colour and
   no other, :mod:`verl_tor.testing.colour_reward`), one fresh picture per training prompt, 48 held-out pictures;
2. model: a random tiny Qwen2.5-VL (hidden 128, 2 layers; :mod:`verl_tor.testing.tiny_model`) with a vocabulary
   of the task's characters and words (as in the measured recipe);
3. warm start: format-only SFT through veRL's SFT trainer (:mod:`verl_tor.demo.warm_start`): random colour labels
   teach "one colour word, then stop" and nothing about seeing, so RL starts at chance;
4. GRPO: ``python -m verl.trainer.main_ppo`` with veRL's stock config and trainer;
5. GRPO+ToR: the same command with ``--config-name=tor_trainer`` (trainer mode ``tor_sync``, ToR defaults);
   every other setting, the seed and the data order are identical;
6. metrics (veRL's file logger, one jsonl per arm), ``rewards.png`` and ``summary.md``.

Settings follow ``shared/docs/cpu-demo.md`` (16 prompts x 8 responses, lr 5e-4, no KL, responses <= 4 tokens,
greedy validation every 10 steps), measured to take this model from chance to ~0.95 reward in ~70 steps, except
the mini-batch: 4 prompts (4 optimizer updates per step) instead of 8 learns faster per step at about the same cost,
which a 30-step budget needs (GRPO, reward in steps 21-30: 0.42 and 0.45 against 0.23-0.41 with 8). It is also
closer to instability: one of three later 30-step GRPO runs (seed 0) collapsed after step 17 (README, "The CPU demo").

    python -m verl_tor.demo [--steps N] [--seed S] [--smoke] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import verl_tor
from verl_tor.demo import metrics
from verl_tor.testing.cpu_overrides import cpu_env, cpu_overrides
from verl_tor.testing.synthetic_data import COLOURS, QUESTION

DEFAULT_STEPS = 30
GRPO, TOR = "GRPO", "GRPO+ToR"
# Output folder of each arm and whether it runs the ToR config.
ARM_DIRS = {GRPO: "grpo", TOR: "grpo_tor"}
TOR_CONFIG_DIR = os.path.join(os.path.dirname(verl_tor.__file__), "config")
# All the text the model ever reads: the tiny model's chat template (system prompt, roles) and the question.
TASK_TEXT = f"system\nYou are a helpful assistant.\nuser\nassistant\n{QUESTION}"
# A vocabulary of the task's characters and words (~130 tokens instead of ~390): every response token the model
# could sample instead of a colour is a way to lose the answer format, and the prompt is ~35 tokens, not ~70.
TASK_WORDS = [*COLOURS, *sorted(set(re.findall(r"[A-Za-z]+", TASK_TEXT)))]
# A stopped phase gets this long to shut Ray down after SIGINT before its process group is killed.
STOP_GRACE_S = 30


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Everything that sizes a demo run; both arms share all of it."""

    steps: int = DEFAULT_STEPS
    warm_start_steps: int = 40
    warm_start_lr: float = 2e-3
    val_every: int = 10
    val_rows: int = 48
    prompts_per_step: int = 16
    responses_per_prompt: int = 8
    mini_batch_prompts: int = 4
    lr: float = 5e-4
    response_length: int = 4
    agent_workers: int = 2
    hidden: int = 128
    layers: int = 2
    seed: int = 0

    @classmethod
    def smoke(cls) -> DemoSettings:
        """Two steps per arm and a short warm start: the whole pipeline in a few minutes."""
        return cls(steps=2, warm_start_steps=4, val_every=2, val_rows=16)

    @property
    def train_rows(self) -> int:
        """One fresh picture per training prompt, so no step repeats an image."""
        return self.steps * self.prompts_per_step


@dataclasses.dataclass(frozen=True)
class PhaseTime:
    """Wall time of a phase and how long it took to log its first metrics (start-up, and for the RL arms the
    validation before training); NaN if it logged none while it ran."""

    wall_s: float
    first_metrics_s: float

    def describe(self) -> str:
        first = "" if math.isnan(self.first_metrics_s) else f" (first metrics after {self.first_metrics_s:.0f})"
        return f"{self.wall_s:.0f}{first}"


def main_ppo_command(arm: str, settings: DemoSettings, model: str, data: str, run_dir: str) -> list[str]:
    """The ``main_ppo`` command line of one arm: the CPU overrides, then the demo's settings (later ones win)."""
    config = ["--config-path", TOR_CONFIG_DIR, "--config-name", "tor_trainer"] if arm == TOR else []
    sequences_per_mini_batch = settings.mini_batch_prompts * settings.responses_per_prompt
    overrides = cpu_overrides(
        model,
        data,
        run_dir,
        steps=settings.steps,
        train_batch_size=settings.prompts_per_step,
        rollout_n=settings.responses_per_prompt,
        response_length=settings.response_length,
    )
    overrides += [
        f"actor_rollout_ref.actor.optim.lr={settings.lr}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={settings.mini_batch_prompts}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={sequences_per_mini_batch}",
        # Two agent-loop workers prepare requests (chat template, image processing) while the rollout server
        # generates: generation 5.1 -> 3.3 s per step on 2 cores at the same start-up; 4 workers gained nothing.
        f"actor_rollout_ref.rollout.agent.num_workers={settings.agent_workers}",
        f"data.seed={settings.seed}",
        f"actor_rollout_ref.rollout.seed={settings.seed}",
        f"trainer.val_before_train={settings.val_every > 0}",
        f"trainer.test_freq={settings.val_every if settings.val_every > 0 else -1}",
        "trainer.logger=[console,file]",
        "trainer.project_name=verl_tor_demo",
        f"trainer.experiment_name={ARM_DIRS[arm]}",
        # The file logger lives in the TaskRunner Ray actor: its path must reach it through Ray's runtime env.
        f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={os.path.join(run_dir, 'metrics.jsonl')}",
    ]
    return [sys.executable, "-m", "verl.trainer.main_ppo", *config, *overrides]


def _stop(process: subprocess.Popen) -> None:
    """Stop a phase we started: SIGINT lets Ray shut down; then its whole process group (our own) is killed."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _tail(path: str, lines: int = 40) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def run_phase(
    name: str,
    command: list[str],
    env: dict[str, str],
    log_path: str,
    total: int,
    progress: Callable[[], tuple[int, dict[str, str]]],
) -> PhaseTime:
    """Run ``command`` with its output in ``log_path`` and a progress bar; returns its wall times.

    ``progress()`` returns ``(steps done, postfix)``, read from the phase's metrics file while it runs (an empty
    postfix: no metrics yet). Raises ``RuntimeError`` with the log's last lines if the command fails; Ctrl-C stops
    it (and its Ray cluster).
    """
    from tqdm import tqdm

    start = time.perf_counter()
    first_metrics = math.nan
    with open(log_path, "w", encoding="utf-8") as log, tqdm(total=total, desc=name, unit="step") as bar:
        # A session of its own: stopping the phase reaches every process it started, and only those.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            while process.poll() is None:
                time.sleep(1.0)
                done, postfix = progress()
                if postfix and math.isnan(first_metrics):
                    first_metrics = time.perf_counter() - start
                bar.update(max(0, min(done, total) - bar.n))
                bar.set_postfix(postfix or {"status": "starting"}, refresh=True)
            done, postfix = progress()
            bar.update(max(0, min(done, total) - bar.n))
            bar.set_postfix(postfix, refresh=True)
        except BaseException:
            _stop(process)
            raise
    if process.returncode != 0:
        raise RuntimeError(f"{name} failed (exit code {process.returncode}); log {log_path}:\n{_tail(log_path)}")
    return PhaseTime(time.perf_counter() - start, first_metrics)


def _rl_progress(metrics_path: str) -> Callable[[], tuple[int, dict[str, str]]]:
    def progress() -> tuple[int, dict[str, str]]:
        records = metrics.read_metrics(metrics_path)
        postfix = {}
        _, rewards = metrics.series(records, metrics.REWARD)
        if rewards:
            postfix["reward"] = f"{rewards[-1]:.2f}"
        val_name = metrics.val_metric_name(records)
        if val_name is not None:
            postfix["held-out acc"] = f"{metrics.series(records, val_name)[1][-1]:.2f}"
        seconds = metrics.median_step_time(records)
        if not math.isnan(seconds):
            postfix["s/step"] = f"{seconds:.1f}"
        return metrics.training_steps(records), postfix

    return progress


def _sft_progress(metrics_path: str) -> Callable[[], tuple[int, dict[str, str]]]:
    def progress() -> tuple[int, dict[str, str]]:
        records = metrics.read_metrics(metrics_path)
        _, losses = metrics.series(records, "train/loss")
        return len(losses), ({"loss": f"{losses[-1]:.3f}"} if losses else {})

    return progress


def run_demo(settings: DemoSettings, out_dir: str) -> dict[str, str]:
    """Run the whole pipeline into ``out_dir``; returns the paths of its outputs by name."""
    from verl_tor.testing.synthetic_data import write_dataset
    from verl_tor.testing.tiny_model import build_tiny_qwen25vl

    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    env = {**os.environ, **cpu_env()}
    load_before = os.getloadavg()
    wall: dict[str, PhaseTime] = {}

    start = time.perf_counter()
    data_dir = os.path.join(out_dir, "data")
    write_dataset(data_dir, train=settings.train_rows, val=settings.val_rows, seed=settings.seed)
    init_model = build_tiny_qwen25vl(
        os.path.join(out_dir, "model_init"),
        hidden=settings.hidden,
        layers=settings.layers,
        seed=settings.seed,
        words=TASK_WORDS,
        alphabet=TASK_TEXT,
    )
    wall["data + model"] = PhaseTime(time.perf_counter() - start, math.nan)
    print(f"data and tiny model ready in {wall['data + model'].wall_s:.0f}s ({out_dir})", flush=True)

    warm_dir = os.path.join(out_dir, "warm_start")
    os.makedirs(warm_dir, exist_ok=True)
    warm_metrics = os.path.join(warm_dir, "metrics.jsonl")
    wall["warm start"] = run_phase(
        "warm start (veRL SFT)",
        [
            sys.executable,
            "-m",
            "verl_tor.demo.warm_start",
            f"--model={init_model}",
            f"--out={warm_dir}",
            f"--steps={settings.warm_start_steps}",
            f"--lr={settings.warm_start_lr}",
            f"--seed={settings.seed}",
        ],
        {**env, "VERL_FILE_LOGGER_PATH": warm_metrics},
        os.path.join(warm_dir, "warm_start.log"),
        settings.warm_start_steps,
        _sft_progress(warm_metrics),
    )
    model = os.path.join(warm_dir, "model")

    # Sequential arms: on 2 cores two concurrent runs would only slow each other down and blur the timings.
    records: dict[str, metrics.Records] = {}
    for arm, name in ARM_DIRS.items():
        run_dir = os.path.join(out_dir, name)
        os.makedirs(run_dir, exist_ok=True)
        metrics_path = os.path.join(run_dir, "metrics.jsonl")
        wall[arm] = run_phase(
            arm,
            main_ppo_command(arm, settings, model, data_dir, run_dir),
            env,
            os.path.join(run_dir, "main_ppo.log"),
            settings.steps,
            _rl_progress(metrics_path),
        )
        records[arm] = metrics.read_metrics(metrics_path)

    load_after = os.getloadavg()
    notes = [
        f"{settings.steps} steps per arm; {settings.prompts_per_step} prompts x {settings.responses_per_prompt} "
        f"responses, mini-batch {settings.mini_batch_prompts} prompts, lr {settings.lr}, responses <= "
        f"{settings.response_length} tokens, seed {settings.seed}; tiny Qwen2.5-VL hidden {settings.hidden}, "
        f"{settings.layers} layers; format-only warm start {settings.warm_start_steps} SFT steps",
        "wall time (s): " + ", ".join(f"{phase} {seconds.describe()}" for phase, seconds in wall.items()),
        f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f} on {os.cpu_count()} cores",
    ]
    block = max(1, settings.val_every if settings.steps >= 2 * settings.val_every else settings.steps)
    summary_path = os.path.join(out_dir, "summary.md")
    with open(summary_path, "w", encoding="utf-8") as f:
        f.write(metrics.summary_markdown(records, block=block, notes=notes))
    png_path = metrics.plot_curves(
        records,
        os.path.join(out_dir, "rewards.png"),
        title=f"GRPO vs GRPO+ToR, CPU colour task, {settings.steps} steps",
    )
    return {
        "summary": summary_path,
        "png": png_path,
        **{f"metrics {arm}": os.path.join(out_dir, name, "metrics.jsonl") for arm, name in ARM_DIRS.items()},
    }


def parse_args(argv: list[str] | None = None) -> tuple[DemoSettings, str]:
    """The demo's settings and output folder from the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, help=f"training steps per arm (default {DEFAULT_STEPS}, smoke 2)")
    parser.add_argument(
        "--seed", type=int, help="seed of the data, the tiny model, the warm start and both arms (default 0)"
    )
    parser.add_argument("--smoke", action="store_true", help="2 steps per arm and a short warm start")
    parser.add_argument("--out", help="output folder (default outputs/demo/<timestamp>)")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    settings = DemoSettings.smoke() if args.smoke else DemoSettings()
    changes = {name: getattr(args, name) for name in ("steps", "seed") if getattr(args, name) is not None}
    out_dir = args.out or os.path.join("outputs", "demo", time.strftime("%Y%m%d-%H%M%S"))
    return dataclasses.replace(settings, **changes), out_dir


def main(argv: list[str] | None = None) -> None:
    settings, out_dir = parse_args(argv)
    start = time.perf_counter()
    outputs = run_demo(settings, out_dir)
    with open(outputs["summary"], encoding="utf-8") as f:
        print("\n" + f.read())
    print(f"demo finished in {time.perf_counter() - start:.0f}s; outputs:")
    for name, path in outputs.items():
        print(f"  {name}: {path}")


if __name__ == "__main__":
    main()
