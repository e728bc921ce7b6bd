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

from verl_tor.demo.task import TABLE

# veRL's names: mean sequence score of the rollout batch (the task reward), time of a whole trainer step.
REWARD = "critic/score/mean"
STEP_TIME = "timing_s/step"
# Validation's core metric (greedy, held-out) is named after the data source: val-core/<source>/acc/mean@1.
VAL_PREFIX = "val-core/"
# ToR's selection metrics (fractions of the rollout batch's valid response tokens; mean weight).
TOR_FRACTIONS = ("tor/reasoning_fraction", "tor/perception_fraction", "tor/overlap_fraction", "tor/mean_weight")
# Accuracy of a policy that names a colour without seeing the picture.
CHANCE = 1 / len(TABLE)
# The parts of the task's answer whose held-out accuracy veRL logs (verl_tor.demo.task.compute_score).
ANSWER_PARTS = ("colour", "number", "pick")
# verl_tor.demo.mechanism's metrics as table headers / curve labels.
MECHANISM_HEADERS = {
    "perception_precision": "T_p precision",
    "perception_recall": "T_p recall",
    "reasoning_uncertain_share": "T_r on uncertain",
    "reasoning_colour_share": "T_r on colour",
    "image_share": "base: colour tokens",
    "uncertain_share": "base: uncertain tokens",
}
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


def val_part_name(records: Records, part: str) -> str | None:
    """The held-out accuracy of one part of the answer (``val-aux/<data source>/<part>/mean@1``), or None."""
    names = sorted({name for data in records.values() for name in data if name.startswith("val-aux/")})
    return next((name for name in names if name.endswith(f"/{part}/mean@1")), None)


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


def median_step_time(records: Records, excluding: Iterable[str] = ()) -> float:
    """Median ``timing_s/step`` over the training steps after the first (which also pays for warm-up); NaN if none.

    With a single step, that step's time. ``excluding``: timers inside the step not to count (e.g. the token
    inspector's ``timing_s/tor_inspect``, an instrument of the study rather than part of the method).
    """
    excluding = tuple(excluding)
    steps, times = series(records, STEP_TIME)
    times = [
        time - sum(records[step].get(name, 0.0) for name in excluding) for step, time in zip(steps, times, strict=True)
    ]
    times = times[1:] if len(times) > 1 else times
    return statistics.median(times) if times else math.nan


def format_value(value: float | None, digits: int = 2) -> str:
    """A number with ``digits`` decimals; an em dash for None or NaN (a missing value in a table)."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def summary_markdown(
    arms: dict[str, Records],
    block: int,
    notes: Iterable[str] = (),
    mechanism: dict[int, dict[str, float]] | None = None,
    inspect_page: str | None = None,
) -> str:
    """A short markdown report: reward per block, held-out accuracy, seconds per step and their ratio, and (with
    ``mechanism``, :func:`verl_tor.demo.mechanism.mechanism_by_step` of the ToR arm) what ToR picked per block.

    ``arms`` maps a display name to its records, the baseline first (the ratio is each arm's time over it).
    ``inspect_page``: the token inspector page's path relative to the summary, linked from it.
    """
    lines = ["# GRPO vs GRPO+ToR on the CPU colour-table task", ""]
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
            cells = [format_value(by_span.get(span)) for span in spans]
            final = rewards[-1] if rewards else None
            peak = max(rewards) if rewards else None
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {format_value(final)} | {format_value(peak)} |")
        lines.append("")

    # Held-out accuracy at every validation, and of each part of the answer at the last one.
    lines.append("## Held-out accuracy (greedy)")
    lines.append("")
    for name, records in arms.items():
        metric = val_metric_name(records)
        if metric is None:
            lines.append(f"- {name}: no validation logged")
            continue
        steps, values = series(records, metric)
        points = ", ".join(f"step {step}: {value:.2f}" for step, value in zip(steps, values, strict=True))
        parts = {part: val_part_name(records, part) for part in ANSWER_PARTS}
        last = ", ".join(f"{part} {series(records, key)[1][-1]:.2f}" for part, key in parts.items() if key)
        lines.append(f"- {name} (`{metric}`): {points}" + (f"; parts at the last: {last}" if last else ""))
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
        lines.append(f"| {name} | {training_steps(records)} | {format_value(seconds)} | {format_value(ratio)} |")

    tor_lines = []
    for name, records in arms.items():
        means = {key: series(records, key)[1] for key in TOR_FRACTIONS}
        means[SELECTED] = selected_fraction(records)[1]
        if any(means.values()):
            cells = ", ".join(
                f"{key.split('/')[-1]} {statistics.fmean(values):.2f}" for key, values in means.items() if values
            )
            tor_lines.append(f"- {name}: {cells}")
    if tor_lines:
        lines += ["", "## ToR token selection (mean over steps)", "", *tor_lines]
    if mechanism:
        lines += ["", *mechanism_markdown(mechanism, block, inspect_page)]
    return "\n".join(lines) + "\n"


def mechanism_markdown(mechanism: dict[int, dict[str, float]], block: int, inspect_page: str | None) -> list[str]:
    """The "what ToR picked" section: the mechanism metrics per block of steps (means over its steps)."""
    steps = sorted(mechanism)
    spans = block_means(steps, [0.0] * len(steps), block)
    lines = [
        "## What ToR picked, against the task's ground truth",
        "",
        "Over every valid response token of each recorded rollout batch: T_p's precision and recall for the "
        "image-dependent tokens (the colour word), the share of T_r on genuinely uncertain tokens (a pick with "
        "several right answers) and on colour words; base rates: the share of all tokens that are colour words / "
        "genuinely uncertain (what a selection blind to the scores gets).",
    ]
    if inspect_page:
        lines += ["", f"Every token of every recorded sample: [token inspector]({inspect_page})."]
    lines += [
        "",
        "| steps | " + " | ".join(MECHANISM_HEADERS.values()) + " |",
        "|---" * (len(MECHANISM_HEADERS) + 1) + "|",
    ]
    for first, last, _ in spans:
        inside = [mechanism[s] for s in steps if first <= s <= last]
        cells = [format_value(statistics.fmean(row[key] for row in inside)) for key in MECHANISM_HEADERS]
        lines.append(f"| {first}–{last} | " + " | ".join(cells) + " |")
    covered = [row["samples"] / row["batch_samples"] for row in mechanism.values() if row["batch_samples"]]
    if covered and min(covered) < 1:
        lines += ["", f"(recorded samples: at least {min(covered):.0%} of each rollout batch)"]
    return lines


def plot_curves(
    arms: dict[str, Records],
    path: str,
    title: str = "CPU colour-table task",
    mechanism: dict[int, dict[str, float]] | None = None,
) -> str:
    """Write a PNG: reward per step of every arm with held-out accuracy points (top); with ``mechanism``, what
    ToR picked per step against the ground truth (bottom)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on the machines the demo runs on
    import matplotlib.pyplot as plt

    panels = 2 if mechanism else 1
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
    top.axhline(CHANCE, color="grey", linestyle=":", linewidth=1, label=f"chance (1/{len(TABLE)})")
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("reward / accuracy")
    top.set_title(title)
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    if mechanism:
        bottom = axes[1][0]
        steps = sorted(mechanism)
        for index, (key, label) in enumerate(MECHANISM_HEADERS.items()):
            style = ":" if key in ("image_share", "uncertain_share") else "-"
            bottom.plot(steps, [mechanism[s][key] for s in steps], style, color=f"C{index + 2}", label=label)
        bottom.set_ylim(-0.02, 1.02)
        bottom.set_ylabel("ToR's sets vs ground truth")
        bottom.legend(loc="upper left", fontsize=8)
        bottom.grid(alpha=0.3)
    axes[-1][0].set_xlabel("training step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
