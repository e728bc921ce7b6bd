"""Token-credit methods side by side on the demo's task: does a method beat GRPO, and can the seeds tell?

For each seed, the demo's data, tiny model and warm start (:func:`verl_tor.demo.run.prepare`), then one arm per
method with identical settings (``--methods``, keys of :data:`verl_tor.demo.run.STUDY_ARMS`): ``grpo`` (veRL's stock
config, all tokens weight 1: the baseline), ``tor``, every other registered method (``tor.method=<name>``:
``vppo``, ``pgpo``, ``entropy_top20``), and the paper's motivation arms ``reasoning_only`` / ``perception_only``
(the ``tor.*`` keys of ``recipes/qwen2_5_vl_7b_geo3k_grpo_{reasoning,perception}_only.sh``). Every arm but GRPO
records every sample of every step with the token inspector, so each method's perception signal is scored against
the task's ground truth (:mod:`verl_tor.demo.mechanism`).

Writes ``study.md``, ``study.png`` (mean curves) and ``study.json`` (every number per seed and arm):

- per arm: held-out accuracy at the end (mean ± sd over seeds, and per seed), seeds that reached the threshold,
  seconds per step without the inspector's own time, and their ratio to GRPO of the same seed; for a method with a
  perception signal, T_p's precision and recall for the image-dependent tokens and the score's AUC, first block of
  steps → last;
- per arm against GRPO, paired by seed (same seed: same data, model, warm start and rollout seed): the mean
  difference of the final held-out accuracy, its bootstrap interval and exact sign-flip p-value
  (:func:`verl_tor.eval.stats.paired_difference`, the evaluation's paired comparison), and what the seeds can tell
  apart: the smallest p-value their number allows, and the seeds a test at 5 % would need to detect the observed
  difference 80 % of the time.

    python -m verl_tor.demo.study [--methods grpo,tor,vppo,pgpo,entropy_top20] [--seeds 6] [--first-seed 0]
                                  [--steps N] [--threshold 0.8] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import statistics
import time

from verl_tor.demo import mechanism, metrics
from verl_tor.demo.run import STUDY_ARMS, Arm, DemoSettings, PhaseTime, prepare, run_arm
from verl_tor.eval.stats import detectable_difference, paired_difference, smallest_sign_flip_p, units_for_power
from verl_tor.testing.cpu_overrides import cpu_env

DEFAULT_METHODS = ("grpo", "tor", "vppo", "pgpo", "entropy_top20")
ALPHA = 0.05
POWER = 0.8
# The fewest seeds at which the exact sign-flip test can reach p < 0.05 at all (2 / 2**6 = 0.031).
MIN_TESTABLE_SEEDS = next(n for n in range(1, 64) if smallest_sign_flip_p(n) < ALPHA)
DEFAULT_SEEDS = MIN_TESTABLE_SEEDS
DEFAULT_THRESHOLD = 0.8
STUDY_VAL_EVERY = 5
# Each arm's wall time, kept next to its metrics so that a study that reads the arm back reports it.
PHASE_TIME_FILE = "study_phase_time.json"
# The inspector records every sample for the mechanism columns; its time is not the method's.
INSPECT_TIMER = "timing_s/tor_inspect"
# The perception columns, first block of steps -> last.
PERCEPTION_COLUMNS = {
    "perception_precision": "T_p precision",
    "perception_recall": "T_p recall",
    "perception_auc": "S AUC",
}


@dataclasses.dataclass(frozen=True)
class ArmResult:
    """What the study keeps of one arm of one seed."""

    final_accuracy: float
    """Held-out accuracy at the last validation (NaN without one)."""
    steps_to_threshold: int | None
    """First validation step whose held-out accuracy reached the threshold; None if none did."""
    seconds_per_step: float
    """Median seconds per training step after the first, the inspector's own time taken out."""
    accuracy: dict[int, float]
    """Held-out accuracy by validation step."""
    reward: dict[int, float]
    """Mean training reward by step."""
    perception: dict[int, dict[str, float]] = dataclasses.field(default_factory=dict)
    """By step, the :data:`PERCEPTION_COLUMNS` metrics of the method's perception signal (empty without the
    inspector; NaN for a method without a perception score)."""


def arm_result(
    records: metrics.Records, threshold: float, picked: dict[int, dict[str, float]] | None = None
) -> ArmResult:
    """An :class:`ArmResult` from an arm's veRL metrics and, for an inspected arm, its
    :func:`verl_tor.demo.mechanism.mechanism_by_step`."""
    name = metrics.val_metric_name(records)
    steps, accuracy = metrics.series(records, name) if name else ([], [])
    reached = next((step for step, value in zip(steps, accuracy, strict=True) if value >= threshold), None)
    return ArmResult(
        final_accuracy=accuracy[-1] if accuracy else math.nan,
        steps_to_threshold=reached,
        seconds_per_step=metrics.median_step_time(records, excluding=(INSPECT_TIMER,)),
        accuracy=dict(zip(steps, accuracy, strict=True)),
        reward=dict(zip(*metrics.series(records, metrics.REWARD), strict=True)),
        perception={step: {key: row[key] for key in PERCEPTION_COLUMNS} for step, row in (picked or {}).items()},
    )


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def _nanmean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.fmean(values) if values else math.nan


def perception_blocks(by_seed: dict[int, ArmResult], key: str, block: int) -> tuple[float, float]:
    """Mean over seeds of ``key`` averaged over the first and the last ``block`` recorded steps of each seed."""
    first, last = [], []
    for result in by_seed.values():
        steps = sorted(result.perception)
        if steps:
            first.append(_nanmean([result.perception[s][key] for s in steps[:block]]))
            last.append(_nanmean([result.perception[s][key] for s in steps[-block:]]))
    return _nanmean(first), _nanmean(last)


@dataclasses.dataclass(frozen=True)
class PairedRow:
    """One arm against the baseline, paired by seed (final held-out accuracy)."""

    arm: str
    seeds: int
    difference: float
    low: float
    high: float
    p_value: float
    sd: float
    """Standard deviation (ddof 1) of the per-seed differences; NaN with one seed."""
    seeds_needed: float
    """Seeds a 5 % test would need to detect ``difference`` 80 % of the time (:func:`units_for_power`)."""
    detectable: float
    """The smallest true difference these seeds detect 80 % of the time (inf below 6 seeds)."""


def paired_rows(results: dict[str, dict[int, ArmResult]]) -> list[PairedRow]:
    """Every arm after the first (the baseline) against it, over the seeds both ran."""
    baseline_name = next(iter(results))
    baseline = results[baseline_name]
    rows = []
    for arm, by_seed in list(results.items())[1:]:
        seeds = sorted(seed for seed in by_seed if seed in baseline)
        a = [baseline[seed].final_accuracy for seed in seeds]
        b = [by_seed[seed].final_accuracy for seed in seeds]
        if not seeds or any(math.isnan(value) for value in a + b):
            continue
        paired = paired_difference(a, b)
        differences = [y - x for x, y in zip(a, b, strict=True)]
        sd = statistics.stdev(differences) if len(seeds) > 1 else math.nan
        rows.append(
            PairedRow(
                arm,
                len(seeds),
                paired.difference,
                paired.low,
                paired.high,
                paired.p_value,
                sd,
                units_for_power(sd, paired.difference, ALPHA, POWER) if not math.isnan(sd) else math.nan,
                detectable_difference(sd, len(seeds), ALPHA, POWER) if not math.isnan(sd) else math.nan,
            )
        )
    return rows


def _power_cell(value: float, infinite: str, finite) -> str:
    """A power figure: a dash without one (one seed), ``infinite`` when there is none, else ``finite(value)``."""
    if math.isnan(value):
        return "—"
    return infinite if math.isinf(value) else finite(value)


def _verdict(row: PairedRow) -> str:
    if row.p_value < ALPHA:
        return f"differs from the baseline (p = {row.p_value:.3f} < {ALPHA:g})"
    if smallest_sign_flip_p(row.seeds) >= ALPHA:
        return f"cannot be told apart: {row.seeds} seeds cannot give p < {ALPHA:g} whatever the runs"
    return f"not distinguishable (p = {row.p_value:.2f})"


def study_markdown(
    results: dict[str, dict[int, ArmResult]], threshold: float, notes: list[str] = (), block: int = 10
) -> str:
    """The study's tables: ``results[arm name][seed]``, the baseline arm (GRPO) first; ``block``: steps averaged
    at each end of the perception columns."""
    baseline = next(iter(results))
    seeds = sorted(next(iter(results.values())))
    lines = ["# Token-credit methods on the demo's task, paired by seed against " + baseline, ""]
    lines += [f"- {note}" for note in notes]
    perception_headers = [f"{title}, steps 1–{block} → last {block}" for title in PERCEPTION_COLUMNS.values()]
    lines += [
        "",
        f"| arm | held-out accuracy at the end (mean ± sd) | per seed | seeds with held-out ≥ {threshold:g} | "
        f"s/step (median) | time ratio to {baseline} | " + " | ".join(perception_headers) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(perception_headers),
    ]
    for arm, by_seed in results.items():
        arm_seeds = sorted(by_seed)
        final = [by_seed[seed].final_accuracy for seed in arm_seeds]
        reached = sum(by_seed[seed].steps_to_threshold is not None for seed in arm_seeds)
        ratios = [
            by_seed[seed].seconds_per_step / results[baseline][seed].seconds_per_step
            for seed in arm_seeds
            if seed in results[baseline]
        ]
        perception = []
        for key in PERCEPTION_COLUMNS:
            first, last = perception_blocks(by_seed, key, block)
            perception.append(
                "—" if math.isnan(first) else f"{metrics.format_value(first)} → {metrics.format_value(last)}"
            )
        lines.append(
            f"| {arm} | {_mean_sd(final)} | {', '.join(f'{value:.2f}' for value in final)} | "
            f"{reached}/{len(arm_seeds)} | {_mean_sd([by_seed[seed].seconds_per_step for seed in arm_seeds])} | "
            f"{_mean_sd(ratios)} | " + " | ".join(perception) + " |"
        )
    rows = paired_rows(results)
    if rows:
        lines += [
            "",
            f"Against {baseline}, paired by seed (final held-out accuracy; interval: paired bootstrap 95 %; p: exact "
            f"two-sided sign-flip; with {len(seeds)} seeds no p can be below "
            f"{smallest_sign_flip_p(len(seeds)):.3g}; power figures: normal approximation, 5 % test, 80 % power, "
            "from the observed sd of the differences):",
            "",
            "| arm | difference | 95 % interval | p | sd of differences | seeds to detect this difference | "
            "smallest difference these seeds detect | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            needed = _power_cell(row.seeds_needed, "∞", lambda seeds: f"{math.ceil(seeds)}")
            detectable = _power_cell(row.detectable, f"none below {MIN_TESTABLE_SEEDS} seeds", lambda d: f"{d:.2f}")
            lines.append(
                f"| {row.arm} | {row.difference:+.2f} | [{row.low:+.2f}, {row.high:+.2f}] | {row.p_value:.3g} | "
                f"{metrics.format_value(row.sd)} | {needed} | {detectable} | {_verdict(row)} |"
            )
    return "\n".join(lines) + "\n"


def plot_study(results: dict[str, dict[int, ArmResult]], path: str, title: str) -> str:
    """Mean held-out accuracy (± sd band over seeds) and mean training reward per step, one colour per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for index, (arm, by_seed) in enumerate(results.items()):
        colour = f"C{index}"
        for axis, field in ((left, "accuracy"), (right, "reward")):
            curves = [getattr(result, field) for result in by_seed.values()]
            steps = sorted(set.intersection(*(set(curve) for curve in curves)))
            values = np.array([[curve[step] for step in steps] for curve in curves])
            mean = values.mean(axis=0)
            axis.plot(steps, mean, "o-" if field == "accuracy" else "-", color=colour, label=arm, markersize=4)
            if field == "accuracy" and len(curves) > 1:
                sd = values.std(axis=0, ddof=1)
                axis.fill_between(steps, mean - sd, mean + sd, color=colour, alpha=0.12)
    seeds = len(next(iter(results.values())))
    left.set_title(f"held-out accuracy (greedy), mean ± sd over {seeds} seeds")
    right.set_title(f"training reward, mean over {seeds} seeds")
    for axis in (left, right):
        axis.axhline(metrics.CHANCE, color="grey", linestyle=":", linewidth=1)
        axis.set_xlabel("training step")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    left.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform says: another CPU gives other curves."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def finished_arm(run_dir: str, steps: int, inspected: bool) -> metrics.Records | None:
    """The metrics of an arm an earlier run of the study finished in ``run_dir`` (all ``steps`` training steps and
    the validation after the last, and the inspector's file for an inspected arm), else None."""
    from verl_tor.inspect import INSPECT_FILE

    records = metrics.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    name = metrics.val_metric_name(records)
    finished = metrics.training_steps(records) == steps and name is not None and name in records.get(steps, {})
    if inspected and not os.path.exists(os.path.join(run_dir, INSPECT_FILE)):
        return None
    return records if finished else None


def run_study(
    settings: DemoSettings, seeds: list[int], out_dir: str, arms: tuple[Arm, ...], threshold: float = 0.8
) -> dict[str, str]:
    """Every arm for every seed into ``out_dir/seed_<s>/<arm>``, the baseline first; returns the paths of the
    study's outputs.

    An arm that an earlier run into the same ``out_dir`` finished (:func:`finished_arm`) is read, not run again, so
    an interrupted study continues where it stopped and more seeds or methods can be added to a finished one; a
    partly run arm is run again from scratch. Nothing else is compared: after changing other settings, use another
    ``out_dir``.
    """
    from verl_tor.inspect import INSPECT_FILE

    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    env = {**os.environ, **cpu_env()}
    start = time.perf_counter()
    results: dict[str, dict[int, ArmResult]] = {arm.name: {} for arm in arms}
    wall: dict[str, list[float]] = {}
    reused = 0
    for seed in seeds:
        seed_settings = dataclasses.replace(settings, seed=seed)
        seed_dir = os.path.join(out_dir, f"seed_{seed}")
        phases: dict[str, PhaseTime] = {}
        finished = {
            arm.name: finished_arm(os.path.join(seed_dir, arm.directory), settings.steps, arm.tor is not None)
            for arm in arms
        }
        if any(records is None for records in finished.values()):
            # The same seed gives the same data, model and warm start, so arms run now match arms read back.
            model, data = prepare(seed_settings, seed_dir, env, phases)
        for arm in arms:
            inspect = arm.tor is not None
            records = finished[arm.name]
            run_dir = os.path.join(seed_dir, arm.directory)
            if records is None:
                shutil.rmtree(run_dir, ignore_errors=True)
                records, phases[arm.name] = run_arm(arm, seed_settings, model, data, seed_dir, env, inspect=inspect)
                with open(os.path.join(run_dir, PHASE_TIME_FILE), "w", encoding="utf-8") as f:
                    json.dump(dataclasses.asdict(phases[arm.name]), f)
            else:
                reused += 1
                print(f"seed {seed}, {arm.name}: finished by an earlier run of the study, read back", flush=True)
                if os.path.exists(os.path.join(run_dir, PHASE_TIME_FILE)):
                    with open(os.path.join(run_dir, PHASE_TIME_FILE), encoding="utf-8") as f:
                        phases[arm.name] = PhaseTime(**json.load(f))
            picked = (
                mechanism.mechanism_by_step(os.path.join(seed_dir, arm.directory, INSPECT_FILE)) if inspect else None
            )
            results[arm.name][seed] = arm_result(records, threshold, picked)
        for phase, seconds in phases.items():
            wall.setdefault(phase, []).append(seconds.wall_s)
    total = time.perf_counter() - start
    notes = [
        dataclasses.replace(settings, seed=seeds[0]).describe().replace(f"seed {seeds[0]}", f"seeds {seeds}"),
        f"study wall time {total / 60:.0f} min on {os.cpu_count()} cores of {cpu_name()}"
        + (f" ({reused} arm runs read back from an earlier run)" if reused else "")
        + "; per run, including runs read back that recorded theirs (mean, s): "
        + ", ".join(f"{phase} {statistics.fmean(values):.0f}" for phase, values in wall.items()),
        "runs are bit-identical on one machine; another CPU type or thread count gives other curves",
    ]
    block = max(1, min(10, settings.steps // 3))
    paths = {"table": os.path.join(out_dir, "study.md"), "json": os.path.join(out_dir, "study.json")}
    with open(paths["table"], "w", encoding="utf-8") as f:
        f.write(study_markdown(results, threshold, notes, block))
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(
            {
                "notes": notes,
                "threshold": threshold,
                "arms": {arm.name: list(arm.tor) if arm.tor is not None else None for arm in arms},
                "results": {
                    arm: {seed: dataclasses.asdict(r) for seed, r in rows.items()} for arm, rows in results.items()
                },
                "paired": [dataclasses.asdict(row) for row in paired_rows(results)],
            },
            f,
            indent=1,
        )
    paths["png"] = plot_study(
        results, os.path.join(out_dir, "study.png"), f"CPU colour-table task, {settings.steps} steps per arm"
    )
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.demo.study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated arms, GRPO first as the baseline (default {','.join(DEFAULT_METHODS)}; known: "
        f"{', '.join(STUDY_ARMS)})",
    )
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help=f"number of seeds (default {DEFAULT_SEEDS})")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed + 1, ... (default 0)")
    parser.add_argument("--steps", type=int, help="training steps per arm (default: the demo's)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="held-out accuracy to reach")
    parser.add_argument("--out", help="output folder (default outputs/study/<timestamp>)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or (args.steps is not None and args.steps < 1):
        parser.error("--seeds and --steps must be at least 1")
    names = [name.strip() for name in args.methods.split(",") if name.strip()]
    unknown = [name for name in names if name not in STUDY_ARMS]
    if unknown:
        parser.error(f"unknown method(s) {unknown} in --methods; known: {', '.join(STUDY_ARMS)}")
    if not names or names[0] != "grpo" or len(set(names)) != len(names):
        parser.error("--methods must start with grpo (the baseline every arm is paired with) and name each arm once")
    # Validation every 5 steps for the threshold column; it is greedy and draws no random numbers, so the arms
    # train exactly as in the demo (same seed, same run).
    settings = dataclasses.replace(
        DemoSettings(), val_every=STUDY_VAL_EVERY, **({"steps": args.steps} if args.steps else {})
    )
    out_dir = args.out or os.path.join("outputs", "study", time.strftime("%Y%m%d-%H%M%S"))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    paths = run_study(settings, seeds, out_dir, tuple(STUDY_ARMS[name] for name in names), args.threshold)
    with open(paths["table"], encoding="utf-8") as f:
        print("\n" + f.read())
    for name, path in paths.items():
        print(f"  {name}: {path}")


if __name__ == "__main__":
    main()
