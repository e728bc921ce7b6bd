"""The paper's motivation experiment in miniature, on the demo's task: which tokens should get the gradient?

For each seed, the demo's data, tiny model and warm start (:func:`verl_tor.demo.run.prepare`), then four arms with
identical settings: GRPO (all tokens), reasoning tokens only (T_r, γ_p = γ_o = 0), perception tokens only (all of T_p
with weight 1, also its tokens in T_r: γ_p = γ_overlap = 1, γ_r = γ_o = 0; the ``tor.*`` keys of ``recipes/qwen2_5_vl_7b_geo3k_grpo_{reasoning,perception}_
only.sh``) and GRPO+ToR. Writes ``study.md`` (held-out accuracy at the end, mean ± standard deviation over seeds;
the first validation step at which it reached a threshold; seconds per step and their ratio to GRPO of the same
seed), ``study.png`` (mean curves) and ``study.json`` (every number per seed and arm).

    python -m verl_tor.demo.study [--seeds 3] [--first-seed 0] [--steps N] [--threshold 0.8] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import time

from verl_tor.demo import metrics
from verl_tor.demo.run import GRPO, PERCEPTION_ONLY, REASONING_ONLY, TOR, Arm, DemoSettings, PhaseTime, prepare, run_arm
from verl_tor.testing.cpu_overrides import cpu_env

STUDY_ARMS = (GRPO, REASONING_ONLY, PERCEPTION_ONLY, TOR)
DEFAULT_THRESHOLD = 0.8
STUDY_VAL_EVERY = 5


@dataclasses.dataclass(frozen=True)
class ArmResult:
    """What the study keeps of one arm of one seed."""

    final_accuracy: float
    """Held-out accuracy at the last validation (NaN without one)."""
    steps_to_threshold: int | None
    """First validation step whose held-out accuracy reached the threshold; None if none did."""
    seconds_per_step: float
    accuracy: dict[int, float]
    """Held-out accuracy by validation step."""
    reward: dict[int, float]
    """Mean training reward by step."""


def arm_result(records: metrics.Records, threshold: float) -> ArmResult:
    """An :class:`ArmResult` from an arm's veRL metrics."""
    name = metrics.val_metric_name(records)
    steps, accuracy = metrics.series(records, name) if name else ([], [])
    reached = next((step for step, value in zip(steps, accuracy, strict=True) if value >= threshold), None)
    return ArmResult(
        final_accuracy=accuracy[-1] if accuracy else math.nan,
        steps_to_threshold=reached,
        seconds_per_step=metrics.median_step_time(records),
        accuracy=dict(zip(steps, accuracy, strict=True)),
        reward=dict(zip(*metrics.series(records, metrics.REWARD), strict=True)),
    )


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def study_markdown(results: dict[str, dict[int, ArmResult]], threshold: float, notes: list[str] = ()) -> str:
    """The study's table: ``results[arm name][seed]``, the baseline arm (GRPO) first."""
    baseline = next(iter(results))
    lines = ["# Which tokens get the gradient: GRPO, reasoning only, perception only, GRPO+ToR", ""]
    lines += [f"- {note}" for note in notes]
    lines += [
        "",
        f"| arm | held-out accuracy at the end (mean ± sd) | per seed | first step with held-out ≥ {threshold:g} "
        f"(mean of seeds that reached it) | reached | s/step (median) | time ratio to {baseline} |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, by_seed in results.items():
        seeds = sorted(by_seed)
        final = [by_seed[seed].final_accuracy for seed in seeds]
        reached = [by_seed[seed].steps_to_threshold for seed in seeds if by_seed[seed].steps_to_threshold is not None]
        ratios = [
            by_seed[seed].seconds_per_step / results[baseline][seed].seconds_per_step
            for seed in seeds
            if seed in results[baseline]
        ]
        first_reached = f"{statistics.fmean(reached):.0f}" if reached else "—"
        lines.append(
            f"| {arm} | {_mean_sd(final)} | {', '.join(f'{value:.2f}' for value in final)} | {first_reached} | "
            f"{len(reached)}/{len(seeds)} | {_mean_sd([by_seed[seed].seconds_per_step for seed in seeds])} | "
            f"{_mean_sd(ratios)} |"
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
                axis.fill_between(steps, mean - sd, mean + sd, color=colour, alpha=0.15)
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


def run_study(
    settings: DemoSettings, seeds: list[int], out_dir: str, arms: tuple[Arm, ...] = STUDY_ARMS, threshold: float = 0.8
) -> dict[str, str]:
    """Every arm for every seed into ``out_dir/seed_<s>/<arm>``; returns the paths of the study's outputs."""
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    env = {**os.environ, **cpu_env()}
    start = time.perf_counter()
    results: dict[str, dict[int, ArmResult]] = {arm.name: {} for arm in arms}
    wall: dict[str, list[float]] = {}
    for seed in seeds:
        seed_settings = dataclasses.replace(settings, seed=seed)
        seed_dir = os.path.join(out_dir, f"seed_{seed}")
        phases: dict[str, PhaseTime] = {}
        model, data = prepare(seed_settings, seed_dir, env, phases)
        for arm in arms:
            records, phases[arm.name] = run_arm(arm, seed_settings, model, data, seed_dir, env)
            results[arm.name][seed] = arm_result(records, threshold)
        for phase, seconds in phases.items():
            wall.setdefault(phase, []).append(seconds.wall_s)
    total = time.perf_counter() - start
    notes = [
        dataclasses.replace(settings, seed=seeds[0]).describe().replace(f"seed {seeds[0]}", f"seeds {seeds}"),
        f"study wall time {total / 60:.0f} min on {os.cpu_count()} cores; per run (mean, s): "
        + ", ".join(f"{phase} {statistics.fmean(values):.0f}" for phase, values in wall.items()),
    ]
    paths = {"table": os.path.join(out_dir, "study.md"), "json": os.path.join(out_dir, "study.json")}
    with open(paths["table"], "w", encoding="utf-8") as f:
        f.write(study_markdown(results, threshold, notes))
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(
            {
                "notes": notes,
                "threshold": threshold,
                "results": {
                    arm: {seed: dataclasses.asdict(r) for seed, r in rows.items()} for arm, rows in results.items()
                },
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
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed + 1, ... (default 0)")
    parser.add_argument("--steps", type=int, help="training steps per arm (default: the demo's)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="held-out accuracy to reach")
    parser.add_argument(
        "--arms", help="comma-separated arm folders (default all: " + ",".join(a.directory for a in STUDY_ARMS) + ")"
    )
    parser.add_argument("--out", help="output folder (default outputs/study/<timestamp>)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or (args.steps is not None and args.steps < 1):
        parser.error("--seeds and --steps must be at least 1")
    by_directory = {arm.directory: arm for arm in STUDY_ARMS}
    names = args.arms.split(",") if args.arms else list(by_directory)
    unknown = [name for name in names if name not in by_directory]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; known: {', '.join(by_directory)}")
    # Validation every 5 steps for the steps-to-threshold column; it is greedy and draws no random numbers, so the
    # arms train exactly as in the demo (same seed, same run).
    settings = dataclasses.replace(
        DemoSettings(), val_every=STUDY_VAL_EVERY, **({"steps": args.steps} if args.steps else {})
    )
    out_dir = args.out or os.path.join("outputs", "study", time.strftime("%Y%m%d-%H%M%S"))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    paths = run_study(settings, seeds, out_dir, tuple(by_directory[name] for name in names), args.threshold)
    with open(paths["table"], encoding="utf-8") as f:
        print("\n" + f.read())
    for name, path in paths.items():
        print(f"  {name}: {path}")


if __name__ == "__main__":
    main()
