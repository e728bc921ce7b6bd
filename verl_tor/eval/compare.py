"""Paired comparison of evaluations: is arm B's accuracy different from arm A's, beyond the noise of the items?

    python -m verl_tor.eval.compare BASELINE ARM [ARM...] --out compare.md [--png compare.png]
        [--protocol tor|avg8] [--image present|removed] [--judge-url URL --judge-model NAME]

BASELINE and each ARM are evaluation folders of ``recipes/eval.sh`` (``<run>/eval/<step>_<protocol>``) or run
folders (their latest-step evaluation of ``--protocol`` and ``--image``); several seeds of one arm are given
comma-separated (``run_s0,run_s1,run_s2``). Each ARM is compared with BASELINE on the items both graded, per
benchmark and for the mean over the benchmarks: accuracy of each, the difference, a 95 % paired bootstrap interval
over items (an item resampled with all its samples: avg@8's eight, every seed's), and a two-sided paired p-value
(exact McNemar for one greedy grade per item, else a sign-flip test on per-item mean accuracy;
``verl_tor.eval.stats``). With several seeds, each arm's seed-to-seed standard deviation stands beside it.
It prints one sentence per ARM to paste, e.g.
"GRPO + ToR − GRPO = +1.8 [−0.4, +4.0] points on the mean of 5 benchmarks, p = 0.11 (MathVerse …)".

With ``--judge-url`` (any OpenAI-compatible endpoint), ``EVAL_PROTOCOL=tor`` evaluations are graded as ToR's
harness grades them (``verl_tor.eval.judge``; replies cached on disk); otherwise by the rule-based grades veRL
dumped.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from verl_tor.eval.benchmarks import BENCHMARKS, DATA_SOURCES
from verl_tor.eval.grades import (
    PRESENT,
    PROTOCOLS,
    TOR,
    Evaluation,
    EvaluationError,
    load_evaluation,
    protocol_of,
    read_info,
)
from verl_tor.eval.judge import Judge, add_judge_arguments, judge_from_arguments
from verl_tor.eval.stats import (
    DEFAULT_BOOTSTRAP,
    PairedDifference,
    paired_difference,
    paired_difference_of_means,
    seed_spread,
)

MEAN = "mean"
_STEP = re.compile(r"global_step_(\d+)")


@dataclass
class Arm:
    """One method: its evaluations, one per training seed."""

    label: str
    evaluations: list[Evaluation]


@dataclass
class Comparison:
    """Arm ``other`` against ``baseline``: a paired difference per data source and for the mean over them."""

    baseline: Arm
    other: Arm
    differences: dict[str, PairedDifference]  # data source (and MEAN) -> B - A
    spread: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # seed sd of A and of B
    dropped: dict[str, int] = field(default_factory=dict)  # items graded in one arm only


def evaluation_folder(path: Path, protocol: str, image: str = PRESENT) -> Path:
    """``path`` itself when it is an evaluation folder, else the latest-step evaluation of ``protocol`` and
    ``image`` in the run folder ``path/eval``."""
    if (path / "generations").is_dir():
        return path
    found = [
        folder
        for folder in sorted((path / "eval").glob("*"))
        if folder.is_dir()
        and protocol_of(read_info(folder)) == protocol
        and read_info(folder).get("image", PRESENT) == image
    ]
    if not found:
        raise EvaluationError(
            f"{path}: no evaluation folder, nor a run folder with an {protocol} evaluation (image {image})"
        )

    def step(folder: Path) -> int:
        match = _STEP.search(str(read_info(folder).get("step", folder.name)))
        return int(match.group(1)) if match else -1

    return max(found, key=step)


def run_label(folder: Path) -> str:
    """The method's label: the training run's (``<run>/eval/<evaluation>``), else the evaluation's own, else the
    folder name."""
    run = folder.parent.parent if folder.parent.name == "eval" else None
    if run is not None and read_info(run).get("label"):
        return read_info(run)["label"]
    return read_info(folder).get("label") or folder.name


def load_arm(spec: str, protocol: str, image: str, judge: Judge | None) -> Arm:
    """An arm from ``PATH[,PATH...]`` (one path per seed)."""
    folders = [evaluation_folder(Path(path), protocol, image) for path in spec.split(",") if path]
    evaluations = [load_evaluation(folder, judge) for folder in folders]
    for evaluation in evaluations:
        if evaluation.protocol != protocol:
            raise EvaluationError(f"{evaluation.folder}: protocol {evaluation.protocol or '?'}, not {protocol}")
    return Arm(run_label(folders[0]), evaluations)


def distinct_labels(arms: Sequence[Arm]) -> None:
    """Arms that share a label (one run with and without the image, two runs of one method) get their first
    evaluation's folder name added."""
    labels = [arm.label for arm in arms]
    for arm in arms:
        if labels.count(arm.label) > 1:
            arm.label = f"{arm.label} ({arm.evaluations[0].folder.name})"


def ordered_sources(sources: set[str]) -> list[str]:
    """The paper's benchmarks in Table 4's order, then any other data source."""
    return [s for s in BENCHMARKS if s in sources] + sorted(sources - set(BENCHMARKS))


def _item_values(arm: Arm, source: str, rows: Sequence[str]) -> np.ndarray:
    """``[U, samples]`` (every seed's samples of an item side by side) or ``[U]`` item means when items hold
    different numbers of graded samples."""
    per_item = [[g for ev in arm.evaluations for g in ev.item_grades(source)[row]] for row in rows]
    if len({len(samples) for samples in per_item}) == 1:
        return np.array(per_item, dtype=np.float64)
    return np.array([np.mean(samples) for samples in per_item])


def compare(baseline: Arm, other: Arm, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> Comparison:
    """Paired differences ``other - baseline`` on the items every evaluation of both arms graded."""
    evaluations = baseline.evaluations + other.evaluations
    sources = ordered_sources(set.intersection(*(set(ev.accuracy()) for ev in evaluations)))
    if not sources:
        raise EvaluationError(f"{baseline.label} and {other.label} share no graded data source")
    differences, spread, dropped, strata = {}, {}, {}, []
    for source in sources:
        item_sets = [set(ev.item_grades(source)) for ev in evaluations]
        # Rows in file order (the index numerically), so that a seeded resample is reproducible from the data.
        rows = sorted(set.intersection(*item_sets), key=lambda row: (row.rsplit(":", 1)[0], int(row.rsplit(":", 1)[1])))
        dropped[source] = len(set.union(*item_sets)) - len(rows)
        pair = (_item_values(baseline, source, rows), _item_values(other, source, rows))
        strata.append(pair)
        differences[source] = paired_difference(*pair, bootstrap=bootstrap, seed=seed)
        spread[source] = tuple(
            seed_spread([ev.accuracy()[source] for ev in arm.evaluations]) for arm in (baseline, other)
        )
    if len(sources) > 1:
        differences[MEAN] = paired_difference_of_means(strata, bootstrap=bootstrap, seed=seed)
        spread[MEAN] = tuple(
            seed_spread([np.mean([ev.accuracy()[s] for s in sources]) for ev in arm.evaluations])
            for arm in (baseline, other)
        )
    return Comparison(baseline, other, differences, spread, dropped)


def _points(value: float, sign: bool = True) -> str:
    """Percentage points with one decimal and a true minus sign."""
    return (f"{100 * value:+.1f}" if sign else f"{100 * value:.1f}").replace("-", "−")


def _p(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.2g}"


def _name(source: str, sources: int) -> str:
    return f"mean of {sources} benchmarks" if source == MEAN else DATA_SOURCES.get(source, source)


def grading_note(comparison: Comparison) -> str:
    """Protocol, grading, seeds and items in words."""
    evaluation = comparison.baseline.evaluations[0]
    protocol = "greedy, ToR's harness protocol" if evaluation.protocol == TOR else "avg@8 at T = 1.0"
    grading = "rule-based grading" if evaluation.grading == "rule" else f"graded as the harness by {evaluation.grading}"
    seeds = f"{len(comparison.baseline.evaluations)} vs {len(comparison.other.evaluations)} seeds"
    image = ", image removed" if evaluation.image != PRESENT else ""
    ungraded = sum(ev.ungraded() for arm in (comparison.baseline, comparison.other) for ev in arm.evaluations)
    failed = f", {ungraded} responses ungraded (judge call failed)" if ungraded else ""
    return f"{protocol}{image}, {grading}, {seeds}{failed}"


def sentence(comparison: Comparison) -> str:
    """One pasteable sentence: the mean's difference, interval and p, then each benchmark's."""
    sources = [s for s in comparison.differences if s != MEAN]
    head = MEAN if MEAN in comparison.differences else sources[0]

    def part(source: str) -> str:
        d = comparison.differences[source]
        return f"{_points(d.difference)} [{_points(d.low)}, {_points(d.high)}]"

    lead = comparison.differences[head]
    others = "; ".join(
        f"{_name(s, len(sources))} {part(s)}, {_p(comparison.differences[s].p_value)}" for s in sources if s != head
    )
    detail = f" ({others})" if others else ""
    where = f"the {_name(head, len(sources))}" if head == MEAN else _name(head, len(sources))
    return (
        f"{comparison.other.label} − {comparison.baseline.label} = {part(head)} points on {where}, "
        f"{_p(lead.p_value)}{detail}; {grading_note(comparison)}."
    )


def markdown(comparisons: Sequence[Comparison]) -> str:
    """A table per comparison, its sentence below it."""
    parts = []
    for comparison in comparisons:
        a, b = comparison.baseline.label, comparison.other.label
        seeds = max(len(comparison.baseline.evaluations), len(comparison.other.evaluations)) > 1
        sources = [s for s in comparison.differences if s != MEAN]
        header = ["benchmark", a, b, f"{b} − {a}", "95 % interval", "p", "test", "items"]
        header += [f"{a} seed sd", f"{b} seed sd"] if seeds else []
        lines = [f"### {b} − {a}", "", f"> {grading_note(comparison)}; accuracy in %, differences in points.", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for source, d in comparison.differences.items():
            cells = [_name(source, len(sources)), _points(d.mean_a, False), _points(d.mean_b, False)]
            cells += [
                _points(d.difference),
                f"[{_points(d.low)}, {_points(d.high)}]",
                _p(d.p_value).removeprefix("p = "),
            ]
            items = f"{d.units:,}" + (
                f" ({comparison.dropped[source]:,} graded in one arm only)" if comparison.dropped.get(source) else ""
            )
            cells += [d.test, items]
            if seeds:
                cells += ["–" if v is None else _points(v, False) for v in comparison.spread[source]]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", sentence(comparison), ""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


def plot(comparisons: Sequence[Comparison], path: Path) -> None:
    """Differences (points) with their 95 % intervals, a row per benchmark and the mean, a colour per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(s for c in comparisons for s in c.differences))
    figure, axis = plt.subplots(figsize=(7, 0.5 * len(names) * max(1, len(comparisons)) + 1.5))
    offsets = np.linspace(-0.2, 0.2, len(comparisons)) if len(comparisons) > 1 else [0.0]
    for comparison, offset in zip(comparisons, offsets, strict=True):
        ys, xs, errors = [], [], [[], []]
        for index, name in enumerate(names):
            d = comparison.differences.get(name)
            if d is not None:
                ys.append(len(names) - 1 - index + offset)
                xs.append(100 * d.difference)
                errors[0].append(100 * (d.difference - d.low))
                errors[1].append(100 * (d.high - d.difference))
        label = f"{comparison.other.label} − {comparison.baseline.label}"
        axis.errorbar(xs, ys, xerr=errors, fmt="o", capsize=4, label=label)
    axis.axvline(0, color="grey", linewidth=1)
    sources = len([n for n in names if n != MEAN])
    axis.set_yticks(range(len(names)), [_name(n, sources) for n in reversed(names)])
    axis.set_xlabel("difference in accuracy (points), 95 % paired bootstrap interval")
    axis.set_title(grading_note(comparisons[0]), fontsize="small")
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.eval.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("baseline", help="evaluation or run folder(s) of arm A, comma-separated seeds")
    parser.add_argument("arms", nargs="+", help="evaluation or run folder(s) of each arm compared with A")
    parser.add_argument("--out", type=Path, help="Markdown file to write (default: print only)")
    parser.add_argument("--png", type=Path, help="plot of the differences with their intervals")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=TOR, help="evaluation picked from a run folder")
    parser.add_argument("--image", choices=("present", "removed"), default=PRESENT, help="likewise (IMAGE=removed)")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the permutation test")
    add_judge_arguments(parser)
    args = parser.parse_args(argv)
    judge = judge_from_arguments(parser, args)
    try:
        arms = [load_arm(spec, args.protocol, args.image, judge) for spec in [args.baseline, *args.arms]]
        distinct_labels(arms)
        comparisons = [compare(arms[0], arm, args.bootstrap, args.seed) for arm in arms[1:]]
    except EvaluationError as error:
        sys.exit(f"verl_tor.eval.compare: {error}")
    if judge is not None and judge.failed_calls:
        print(f"warning: {judge.failed_calls} judge calls failed; those responses are ungraded", file=sys.stderr)
    text = markdown(comparisons)
    if args.out:
        figure = f"\n![differences]({os.path.relpath(args.png, args.out.parent)})\n" if args.png else ""
        args.out.write_text("# Paired comparison\n\n" + text + figure)
    if args.png:
        plot(comparisons, args.png)
    for comparison in comparisons:
        print(sentence(comparison))


if __name__ == "__main__":
    main()
