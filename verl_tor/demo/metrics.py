"""Read veRL's file-logger metrics of the demo's runs; reward curves, step times, a summary and a PNG.

veRL's ``FileLogger`` (``trainer.logger=[...,file]``, path ``$VERL_FILE_LOGGER_PATH``) writes one JSON line per
``Tracking.log`` call: ``{"step": S, "data": {name: value}}``. Validation before training is logged at step 0;
later validations share their step's line or get one of their own, so lines are merged by step.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable

# veRL's names: mean sequence score of the rollout batch (the task reward), time of a whole trainer step.
REWARD = "critic/score/mean"
STEP_TIME = "timing_s/step"
# Validation's core metric (greedy, held-out) is named after the data source: val-core/<source>/acc/mean@1.
VAL_PREFIX = "val-core/"
# ToR's selection metrics worth a curve (fractions of the rollout batch's valid response tokens).
TOR_CURVES = ("tor/reasoning_fraction", "tor/perception_fraction", "tor/overlap_fraction", "tor/mean_weight")
# Derived: the fraction of tokens in T_r ∪ T_p (with γ_o = 0 the only tokens that get any gradient).
SELECTED = "selected_fraction"

Records = dict[int, dict[str, float]]


def read_metrics(path: str) -> Records:
    """``{step: {name: value}}`` from a file-logger jsonl; a missing file or a partly written last line is skipped.

    The demo reads the file while veRL is still writing it, so a line without its newline yet is not an error.
    """
    records: Records = {}
    if not os.path.exists(path):
        return records
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            entry = json.loads(line)
            records.setdefault(int(entry["step"]), {}).update(entry["data"])
    return records


def series(records: Records, name: str) -> tuple[list[int], list[float]]:
    """Steps and values of metric ``name`` where it was logged, in step order."""
    steps = sorted(step for step, data in records.items() if name in data)
    return steps, [float(records[step][name]) for step in steps]


def selected_fraction(records: Records) -> tuple[list[int], list[float]]:
    """|T_r ∪ T_p| / N per step: reasoning + perception − overlap fraction, where ToR logged all three."""
    keys = ("tor/reasoning_fraction", "tor/perception_fraction", "tor/overlap_fraction")
    steps = sorted(step for step, data in records.items() if all(key in data for key in keys))
    return steps, [records[s][keys[0]] + records[s][keys[1]] - records[s][keys[2]] for s in steps]


def val_metric_name(records: Records) -> str | None:
    """The held-out accuracy metric (``val-core/<data source>/acc/mean@1``), or None before any validation."""
    names = sorted({name for data in records.values() for name in data if name.startswith(VAL_PREFIX)})
    accuracy = [name for name in names if "/acc/" in name]
    return (accuracy or names or [None])[0]


def training_steps(records: Records) -> int:
    """Number of finished training steps (validation-only lines, e.g. step 0, do not count)."""
    return sum(1 for data in records.values() if STEP_TIME in data)


def block_means(steps: list[int], values: list[float], block: int) -> list[tuple[int, int, float]]:
    """Means over consecutive step blocks ``[1, block], [block+1, 2*block], ...``: ``(first, last, mean)``.

    ``last`` is the last step of the block that has a value (a final block may be short).
    """
    blocks: dict[int, list[tuple[int, float]]] = {}
    for step, value in zip(steps, values, strict=True):
        blocks.setdefault((step - 1) // block, []).append((step, value))
    return [
        (index * block + 1, max(s for s, _ in items), statistics.fmean(v for _, v in items))
        for index, items in sorted(blocks.items())
    ]


def median_step_time(records: Records) -> float:
    """Median ``timing_s/step`` over the training steps after the first (which also pays for warm-up); NaN if none.

    With a single step, that step's time.
    """
    _, times = series(records, STEP_TIME)
    times = times[1:] if len(times) > 1 else times
    return statistics.median(times) if times else math.nan


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def summary_markdown(arms: dict[str, Records], block: int, notes: Iterable[str] = ()) -> str:
    """A short markdown report: reward per block, held-out accuracy, seconds per step and their ratio.

    ``arms`` maps a display name to its records, the baseline first (the ratio is each arm's time over it).
    """
    lines = ["# GRPO vs GRPO+ToR on the CPU colour task", ""]
    lines += [f"- {note}" for note in notes]
    if notes:
        lines.append("")

    # Reward per block of steps.
    per_arm = {name: block_means(*series(records, REWARD), block) for name, records in arms.items()}
    spans = sorted({(first, last) for blocks in per_arm.values() for first, last, _ in blocks})
    if spans:
        lines.append(f"## Mean training reward (`{REWARD}`) per block of {block} steps")
        lines.append("")
        lines.append("| arm | " + " | ".join(f"{first}–{last}" for first, last in spans) + " | final | peak |")
        lines.append("|---" * (len(spans) + 3) + "|")
        for name, records in arms.items():
            by_span = {(first, last): mean for first, last, mean in per_arm[name]}
            _, rewards = series(records, REWARD)
            cells = [_fmt(by_span.get(span)) for span in spans]
            final = rewards[-1] if rewards else None
            peak = max(rewards) if rewards else None
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {_fmt(final)} | {_fmt(peak)} |")
        lines.append("")

    # Held-out accuracy at every validation.
    lines.append("## Held-out accuracy (greedy)")
    lines.append("")
    for name, records in arms.items():
        metric = val_metric_name(records)
        if metric is None:
            lines.append(f"- {name}: no validation logged")
            continue
        steps, values = series(records, metric)
        points = ", ".join(f"step {step}: {value:.2f}" for step, value in zip(steps, values, strict=True))
        lines.append(f"- {name} (`{metric}`): {points}")
    lines.append("")

    # Cost per step.
    lines.append(f"## Seconds per step (`{STEP_TIME}`, median over steps after the first)")
    lines.append("")
    lines.append("| arm | steps | s/step | ratio |")
    lines.append("|---|---|---|---|")
    baseline = None
    for name, records in arms.items():
        seconds = median_step_time(records)
        baseline = seconds if baseline is None else baseline
        ratio = seconds / baseline if baseline and not math.isnan(baseline) else math.nan
        lines.append(f"| {name} | {training_steps(records)} | {_fmt(seconds)} | {_fmt(ratio)} |")

    tor_lines = []
    for name, records in arms.items():
        means = {key: series(records, key)[1] for key in TOR_CURVES}
        means[SELECTED] = selected_fraction(records)[1]
        if any(means.values()):
            cells = ", ".join(
                f"{key.split('/')[-1]} {statistics.fmean(values):.2f}" for key, values in means.items() if values
            )
            tor_lines.append(f"- {name}: {cells}")
    if tor_lines:
        lines += ["", "## ToR token selection (mean over steps)", "", *tor_lines]
    return "\n".join(lines) + "\n"


def plot_curves(arms: dict[str, Records], path: str, title: str = "CPU colour task") -> str:
    """Write a PNG: reward per step of every arm with held-out accuracy points (top), ToR fractions (bottom)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on the machines the demo runs on
    import matplotlib.pyplot as plt

    tor_arms = {name: records for name, records in arms.items() if any(series(records, k)[0] for k in TOR_CURVES)}
    panels = 2 if tor_arms else 1
    fig, axes = plt.subplots(panels, 1, figsize=(8, 4 * panels), sharex=True, squeeze=False)
    top = axes[0][0]
    for index, (name, records) in enumerate(arms.items()):
        colour = f"C{index}"
        steps, rewards = series(records, REWARD)
        top.plot(steps, rewards, color=colour, alpha=0.8, label=f"{name}: training reward")
        metric = val_metric_name(records)
        if metric is not None:
            val_steps, accuracy = series(records, metric)
            top.plot(val_steps, accuracy, "o--", color=colour, markersize=6, label=f"{name}: held-out accuracy")
    top.axhline(1 / 6, color="grey", linestyle=":", linewidth=1, label="chance (1/6)")
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("reward / accuracy")
    top.set_title(title)
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    if tor_arms:
        bottom = axes[1][0]
        for name, records in tor_arms.items():
            curves = {key: series(records, key) for key in TOR_CURVES}
            curves["in T_r ∪ T_p (" + SELECTED + ")"] = selected_fraction(records)
            for index, (key, (steps, values)) in enumerate(curves.items()):
                # reasoning and perception fractions often coincide (both capped at α = 0.3): dash one of them.
                style = "--" if key == "tor/reasoning_fraction" else ":" if key == "tor/mean_weight" else "-"
                if steps:
                    bottom.plot(steps, values, style, color=f"C{index + 2}", label=f"{name}: {key}")
        bottom.set_ylim(-0.02, 1.02)
        bottom.set_ylabel("fraction of response tokens / mean weight")
        bottom.legend(loc="upper left", fontsize=8)
        bottom.grid(alpha=0.3)
    axes[-1][0].set_xlabel("training step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
