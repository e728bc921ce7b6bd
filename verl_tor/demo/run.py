"""The CPU demo: GRPO vs GRPO+ToR with veRL's real ``main_ppo`` on a tiny Qwen2.5-VL and a see-then-reason task.

Pipeline (every training phase is a veRL entry point in its own process, shown as a progress bar):

1. data: the colour-table task (:mod:`verl_tor.demo.task`): a picture of a colour, a fixed colour -> number table
   in the prompt; the right response names the colour (perception), its number (lookup) and another number of the
   table (a genuine choice); one fresh picture per training prompt, held-out pictures for validation;
2. model: a random tiny Qwen2.5-VL (or ``--family``'s, :mod:`verl_tor.testing.tiny_model`) with a vocabulary of the task's words;
3. warm start through veRL's SFT trainer (:mod:`verl_tor.demo.warm_start`) on **random** colour labels: it teaches
   the format, the lookup and the pick rule, not seeing, so RL starts at chance (1/4);
4. GRPO: ``python -m verl.trainer.main_ppo`` with veRL's stock config and trainer;
5. GRPO+ToR: the same command with ``--config-name=tor_trainer`` (trainer mode ``tor_sync``, ToR defaults), the
   token inspector recording every sample of every step (``tor.inspect``);
6. ``summary.md`` (veRL's metrics per arm, and what ToR picked against the task's ground truth,
   :mod:`verl_tor.demo.mechanism`), ``curves.png`` and the inspector page ``inspect.html``.

Reproducible: the rollout samples each request from its own seeded generator (the ``hf`` server's
``seeded_sampling``) and the replay buffer hands batches over in a canonical order
(:mod:`verl_tor.demo.sampler`), so the same seed gives the same run (README, "The CPU demo").

Settings (:class:`DemoSettings`) were chosen by measurement (README, "The CPU demo"): four colours (with six,
GRPO's held-out accuracy stalled near 0.4), lr 1e-3 with 2 optimizer updates per step, and the paper's GRPO KL
loss (0.01, low_var_kl) against the warm-started model, which kept GRPO from stalling on seed 0 (0.69 without it)
and keeps ToR's weight-0 tokens in format (an entropy bonus instead destroyed them: it is not weighted).

    python -m verl_tor.demo [--steps N] [--seed S] [--smoke] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import verl_tor
from verl_tor.demo import metrics
from verl_tor.demo.task import TASK_TEXT, TASK_WORDS
from verl_tor.methods.registry import METHODS
from verl_tor.testing.cpu_overrides import cpu_env, cpu_overrides
from verl_tor.testing.tiny_model import FAMILIES, family_of

DEFAULT_STEPS = 30
TOR_CONFIG_DIR = os.path.join(os.path.dirname(verl_tor.__file__), "config")
# A stopped phase gets this long to shut Ray down after SIGINT before its process group is killed.
STOP_GRACE_S = 30


@dataclasses.dataclass(frozen=True)
class Arm:
    """One training arm: its output folder and ToR overrides (None: veRL's stock config, i.e. plain GRPO)."""

    name: str
    directory: str
    tor: tuple[str, ...] | None

    def config_args(self) -> list[str]:
        """The ``main_ppo`` arguments that select the arm's config (before any override)."""
        return [] if self.tor is None else ["--config-path", TOR_CONFIG_DIR, "--config-name", "tor_trainer"]


GRPO = Arm("GRPO", "grpo", None)
TOR = Arm("GRPO+ToR", "grpo_tor", ())
# The paper's motivation experiment (recipes/qwen2_5_vl_7b_geo3k_grpo_{reasoning,perception}_only.sh): only one set
# gets gradient, all of it (perception only: every T_p token weight 1, also those in T_r).
REASONING_ONLY = Arm("reasoning only", "reasoning_only", ("tor.perception_weight=0.0", "tor.other_weight=0.0"))
PERCEPTION_ONLY = Arm(
    "perception only",
    "perception_only",
    ("tor.reasoning_weight=0.0", "tor.perception_weight=1.0", "tor.overlap_weight=1.0", "tor.other_weight=0.0"),
)
DEMO_ARMS = (GRPO, TOR)
# Short names of the registered methods in tables and plots (``make study METHODS=...``).
METHOD_TITLES = {"grpo": GRPO.name, "tor": TOR.name, "entropy_top20": "80/20 entropy", "vppo": "VPPO", "pgpo": "PGPO"}


def method_arm(method: str) -> Arm:
    """The arm of a registered method (``tor.method=<method>`` on ``tor_trainer``); ``grpo`` is veRL's stock config
    and ``tor`` the demo's GRPO+ToR arm (the defaults), so that both match ``make demo`` run for run."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; registered: {', '.join(METHODS)}")
    known = {"grpo": GRPO, "tor": TOR}
    return known.get(method) or Arm(METHOD_TITLES.get(method, method), method, (f"tor.method={method}",))


STUDY_ARMS = {
    **{method: method_arm(method) for method in METHODS},
    "reasoning_only": REASONING_ONLY,
    "perception_only": PERCEPTION_ONLY,
}
"""Every arm ``make study`` can run, by its ``METHODS`` key: the registered methods and the motivation arms."""


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Everything that sizes a demo run; all arms share all of it."""

    steps: int = DEFAULT_STEPS
    warm_start_steps: int = 60
    warm_start_lr: float = 2e-3
    val_every: int = 10
    val_rows: int = 64
    prompts_per_step: int = 16
    responses_per_prompt: int = 8
    mini_batch_prompts: int = 8
    lr: float = 1e-3
    entropy_coeff: float = 0.0
    kl_coeff: float = 0.01
    response_length: int = 4
    agent_workers: int = 2
    family: str = "qwen2_5_vl"
    hidden: int = 128
    layers: int | None = None
    seed: int = 0

    @classmethod
    def smoke(cls) -> DemoSettings:
        """Two steps per arm and a short warm start: the whole pipeline in a few minutes."""
        return cls(steps=2, warm_start_steps=4, val_every=2, val_rows=16)

    @property
    def train_rows(self) -> int:
        """One fresh picture per training prompt, so no step repeats an image."""
        return self.steps * self.prompts_per_step

    @property
    def rollout_batch(self) -> int:
        """Responses per step (what the inspector records in full for the mechanism metrics)."""
        return self.prompts_per_step * self.responses_per_prompt

    def model_title(self) -> str:
        """The tiny model's family and size, e.g. ``Qwen2.5-VL hidden 128, 2 layers``."""
        family = family_of(self.family)
        layers = self.layers or family.default_size.layers
        return f"{family.title} hidden {self.hidden}, {layers} layers"

    def describe(self) -> str:
        return (
            f"{self.steps} steps per arm; {self.prompts_per_step} prompts x {self.responses_per_prompt} responses, "
            f"mini-batch {self.mini_batch_prompts} prompts, lr {self.lr}, KL loss {self.kl_coeff} (low_var_kl), "
            f"entropy bonus {self.entropy_coeff}, responses <= {self.response_length} tokens, "
            f"seed {self.seed}; tiny {self.model_title()}; warm start "
            f"{self.warm_start_steps} SFT steps at lr {self.warm_start_lr}; held-out accuracy (greedy) on "
            f"{self.val_rows} pictures every {self.val_every} steps"
        )


@dataclasses.dataclass(frozen=True)
class PhaseTime:
    """Wall time of a phase and how long it took to log its first metrics (start-up, and for the RL arms the
    validation before training); NaN if it logged none while it ran."""

    wall_s: float
    first_metrics_s: float

    def describe(self) -> str:
        first = "" if math.isnan(self.first_metrics_s) else f" (first metrics after {self.first_metrics_s:.0f})"
        return f"{self.wall_s:.0f}{first}"


def main_ppo_command(
    arm: Arm,
    settings: DemoSettings,
    model: str,
    data: str,
    run_dir: str,
    inspect: bool = False,
    save_last: bool = False,
) -> list[str]:
    """The ``main_ppo`` command line of one arm: the CPU overrides, then the demo's settings (later ones win).

    ``inspect``: the token inspector records every sample of every step into ``run_dir/tor_inspect.jsonl``
    (ToR arms only). ``save_last``: the last step's model is kept as an HF folder,
    ``run_dir/checkpoints/global_step_<steps>/actor/huggingface`` (what ``python -m verl_tor.audit`` reads).
    """
    if inspect and arm.tor is None:
        raise ValueError(f"the token inspector needs a ToR arm, not {arm.name}")
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
        "reward.custom_reward_function.path=pkg://verl_tor.demo.task",
        "reward.custom_reward_function.name=compute_score",
        f"actor_rollout_ref.actor.optim.lr={settings.lr}",
        f"actor_rollout_ref.actor.entropy_coeff={settings.entropy_coeff}",
        f"actor_rollout_ref.actor.use_kl_loss={settings.kl_coeff > 0}",
        f"actor_rollout_ref.actor.kl_loss_coef={settings.kl_coeff}",
        "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={settings.mini_batch_prompts}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={sequences_per_mini_batch}",
        # Two agent-loop workers prepare requests (chat template, image processing) while the rollout server
        # generates: generation 5.1 -> 3.3 s per step on 2 cores at the same start-up; 4 workers gained nothing.
        f"actor_rollout_ref.rollout.agent.num_workers={settings.agent_workers}",
        f"data.seed={settings.seed}",
        f"actor_rollout_ref.rollout.seed={settings.seed}",
        # Reproducible runs: each response from its own seeded generator whatever the batching, and batches in a
        # canonical order whatever order the concurrent agent loops finished in.
        "+actor_rollout_ref.rollout.engine_kwargs.hf.seeded_sampling=true",
        "trainer.v1.sampler.custom_sampler.path=pkg://verl_tor.demo.sampler",
        "trainer.v1.sampler.custom_sampler.name=CanonicalReplayBuffer",
        f"trainer.val_before_train={settings.val_every > 0}",
        f"trainer.test_freq={settings.val_every if settings.val_every > 0 else -1}",
        "trainer.logger=[console,file]",
        "trainer.project_name=verl_tor_demo",
        f"trainer.experiment_name={arm.directory}",
        # The file logger lives in the TaskRunner Ray actor: its path must reach it through Ray's runtime env.
        f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={os.path.join(run_dir, 'metrics.jsonl')}",
        *(arm.tor or ()),
    ]
    if inspect:
        overrides += [f"tor.inspect.samples_per_step={settings.rollout_batch}", f"tor.inspect.dir={run_dir}"]
    if save_last:
        overrides += [
            f"trainer.save_freq={settings.steps}",
            "actor_rollout_ref.actor.checkpoint.save_contents=[hf_model]",
        ]
    return [sys.executable, "-m", "verl.trainer.main_ppo", *arm.config_args(), *overrides]


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


def prepare(settings: DemoSettings, out_dir: str, env: dict[str, str], wall: dict[str, PhaseTime]) -> tuple[str, str]:
    """Data, tiny model and warm start into ``out_dir``; returns (warm-started model, data folder). Phase times
    go into ``wall``."""
    from verl_tor.demo.task import write_dataset
    from verl_tor.testing.tiny_model import build_tiny_model

    start = time.perf_counter()
    data_dir = os.path.join(out_dir, "data")
    write_dataset(data_dir, train=settings.train_rows, val=settings.val_rows, seed=settings.seed)
    init_model = build_tiny_model(
        os.path.join(out_dir, "model_init"),
        family=settings.family,
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
    return os.path.join(warm_dir, "model"), data_dir


def run_arm(
    arm: Arm,
    settings: DemoSettings,
    model: str,
    data: str,
    out_dir: str,
    env: dict[str, str],
    inspect: bool = False,
    save_last: bool = False,
) -> tuple[metrics.Records, PhaseTime]:
    """Train one arm into ``out_dir/<arm.directory>``; returns its metrics and wall time (``inspect``, ``save_last``:
    :func:`main_ppo_command`)."""
    run_dir = os.path.join(out_dir, arm.directory)
    os.makedirs(run_dir, exist_ok=True)
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    wall = run_phase(
        arm.name,
        main_ppo_command(arm, settings, model, data, run_dir, inspect=inspect, save_last=save_last),
        env,
        os.path.join(run_dir, "main_ppo.log"),
        settings.steps,
        _rl_progress(metrics_path),
    )
    return metrics.read_metrics(metrics_path), wall


def run_demo(settings: DemoSettings, out_dir: str) -> dict[str, str]:
    """Run the whole pipeline into ``out_dir``; returns the paths of its outputs by name."""
    from verl_tor.demo import mechanism
    from verl_tor.demo.warm_start import SFT_LOSS_FLOOR
    from verl_tor.inspect import INSPECT_FILE
    from verl_tor.inspect.page import write_page

    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    env = {**os.environ, **cpu_env()}
    load_before = os.getloadavg()
    wall: dict[str, PhaseTime] = {}
    model, data_dir = prepare(settings, out_dir, env, wall)

    # Sequential arms: on 2 cores two concurrent runs would only slow each other down and blur the timings.
    records: dict[str, metrics.Records] = {}
    for arm in DEMO_ARMS:
        records[arm.name], wall[arm.name] = run_arm(
            arm, settings, model, data_dir, out_dir, env, inspect=arm is TOR, save_last=arm is TOR
        )
    load_after = os.getloadavg()

    tor_dir = os.path.join(out_dir, TOR.directory)
    picked = mechanism.mechanism_by_step(os.path.join(tor_dir, INSPECT_FILE))
    page = write_page(tor_dir, out=os.path.join(out_dir, "inspect.html"))
    _, sft_losses = metrics.series(
        metrics.read_metrics(os.path.join(out_dir, "warm_start", "metrics.jsonl")), "train/loss"
    )
    notes = [
        settings.describe(),
        f"warm-start loss {sft_losses[-1]:.3f} at its last step (floor of its random labels {SFT_LOSS_FLOOR:.3f})"
        if sft_losses
        else "warm start logged no loss",
        "wall time (s): " + ", ".join(f"{phase} {seconds.describe()}" for phase, seconds in wall.items()),
        f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f} on {os.cpu_count()} cores",
    ]
    block = max(1, settings.val_every if settings.steps >= 2 * settings.val_every else settings.steps)
    summary_path = os.path.join(out_dir, "summary.md")
    with open(summary_path, "w", encoding="utf-8") as f:
        f.write(
            metrics.summary_markdown(
                records, block=block, notes=notes, mechanism=picked, inspect_page=os.path.basename(page)
            )
        )
    png_path = metrics.plot_curves(
        records,
        os.path.join(out_dir, "curves.png"),
        title=f"GRPO vs GRPO+ToR, CPU colour-table task, {settings.steps} steps, seed {settings.seed}",
        mechanism=picked,
    )
    return {
        "summary": summary_path,
        "png": png_path,
        "inspect page": page,
        **{f"metrics {arm.name}": os.path.join(out_dir, arm.directory, "metrics.jsonl") for arm in DEMO_ARMS},
    }


def parse_args(argv: list[str] | None = None) -> tuple[DemoSettings, str]:
    """The demo's settings and output folder from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, help=f"training steps per arm (default {DEFAULT_STEPS}, smoke 2)")
    parser.add_argument(
        "--seed", type=int, help="seed of the data, the tiny model, the warm start and both arms (default 0)"
    )
    parser.add_argument(
        "--family",
        choices=sorted(FAMILIES),
        help=f"the tiny model's family (default {DemoSettings.family}; README, 'Supported models')",
    )
    parser.add_argument("--smoke", action="store_true", help="2 steps per arm and a short warm start")
    parser.add_argument("--out", help="output folder (default outputs/demo/<timestamp>)")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    settings = DemoSettings.smoke() if args.smoke else DemoSettings()
    changes = {name: getattr(args, name) for name in ("steps", "seed", "family") if getattr(args, name) is not None}
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
