"""Results of recipe runs in the paper's Table 4 layout, the paper's numbers beside ours, and training curves.

    python -m verl_tor.eval.report RUN_DIR... --out results.md [--png curves.png] [--compare]
        [--judge-url URL --judge-model NAME]

A RUN_DIR is what a recipe writes (``OUTPUT_DIR/<experiment>``: ``run.json``, ``metrics/*.jsonl`` from veRL's file
logger, ``eval/<step>_<mode>/`` from ``recipes/eval.sh``) or one evaluation folder. Each evaluation gives a table
row: veRL's validation metric ``val-core/<data_source>/acc/mean@N`` (the mean accuracy over the N samples of each
prompt, from ``verl_tor.eval.rewards``; ``reward`` for a reward function without ``acc``) per benchmark. A run without
evaluations contributes its last training-time validation instead. Tables are split by N: greedy (N = 1,
``EVAL_PROTOCOL=tor``, the paper's protocol) and avg@N (``EVAL_PROTOCOL=avg8``). Rows of the paper's setting
(Qwen2.5-VL-7B-Instruct trained on Geometry3K, a Table 4 method) get the paper's row beside them.

With ``--judge-url URL --judge-model NAME`` every ``EVAL_PROTOCOL=tor`` evaluation also gets a row graded as ToR's
harness grades (``verl_tor.eval.judge``: an OpenAI-compatible LLM extracts and judges answers; replies cached on
disk), the judge model and the count of responses a failed call left ungraded in its label.

Evaluations with ``IMAGE=removed`` (every image deleted from the prompt) get rows of their own and a table of the
accuracy with the image, without it and the gap, per benchmark. ``--compare`` adds the paired comparison of
``verl_tor.eval.compare`` of every run's latest evaluation against the first run's, per protocol.

The PNG has one line per run: reward (``critic/score/mean``), validation accuracy, ToR's selected fractions
(``tor/*``) and response length over training steps.

A last table lists, per run and evaluation, the rows veRL's ``data.filter_overlong_prompts`` removed (prompts over
``data.max_prompt_length`` tokens, image tokens included), as ``verl_tor.launch.prompt_filter`` recorded them in each
``run.json``: removed training rows change the steps per epoch, removed benchmark rows the accuracy's denominator.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_tor.eval import compare
from verl_tor.eval.benchmarks import BENCHMARKS, DATA_SOURCES
from verl_tor.eval.grades import PRESENT, REMOVED, TOR, EvaluationError, load_evaluation, protocol_of
from verl_tor.eval.judge import HARNESS_RULES, Judge, add_judge_arguments, judge_from_arguments
from verl_tor.inspect.page import write_page
from verl_tor.inspect.reader import find_inspect_file

# Paper Table 4: Qwen2.5-VL-7B-Instruct trained on Geometry3K, greedy decoding, accuracy % (LLM-judged).
PAPER_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
PAPER_TRAIN_SET = "geo3k"
PAPER_TABLE4: dict[str, tuple[float, ...]] = {
    # MathVerse, MathVision, MathVista, WeMath, HallusionBench, mean
    "GRPO": (50.8, 27.3, 70.5, 67.4, 69.8, 57.16),
    "GRPO + ToR": (53.0, 28.6, 71.9, 68.9, 72.4, 58.96),
    "DAPO": (50.6, 26.5, 70.3, 69.3, 67.9, 56.92),
    "DAPO + ToR": (53.4, 27.9, 72.6, 72.1, 71.8, 59.56),
}
GRADING_NOTE = (
    "Grading: rule-based answer matching (`verl_tor.eval.rewards.compute_score`: the last `\\boxed{}`, math-verify, "
    "option letters, yes/no). The paper extracted answers with an LLM judge (Gemini-2.0-Flash); its numbers are "
    "shown for orientation, not as a like-for-like comparison."
)
JUDGED = "graded as ToR's harness by judge"
JUDGE_NOTE = (
    "Rows marked “graded as ToR's harness by judge …” grade each response as the NoisyRollout harness that ToR "
    "reports with does, with that LLM as its judge (`--judge-url`; "
    + "; ".join(f"{DATA_SOURCES[source]}: {rule}" for source, rule in HARNESS_RULES.items())
    + ")."
)
UNJUDGED_NOTE = (
    "These greedy evaluations follow ToR's protocol (`EVAL_PROTOCOL=tor`) except its LLM grading: add "
    "`--judge-url URL --judge-model NAME` for the harness's grading."
)
# Key of verl_tor.launch.prompt_filter's entry in run.json (not imported from there: that module imports veRL).
FILTER_RECORD_KEY = "prompt_filter"
VALIDATION_METRIC = re.compile(r"^val-core/(?P<source>.+)/(?P<variable>acc|reward)/mean@(?P<n>\d+)$")
CURVE_PANELS = (
    ("reward (critic/score/mean)", ("critic/score/mean",)),
    ("validation accuracy", ()),  # every val-core metric of the run
    ("ToR selected fraction of tokens", ("tor/reasoning_fraction", "tor/perception_fraction", "tor/overlap_fraction")),
    ("response length (mean tokens)", ("response_length/mean",)),
)
FRACTION_STYLES = {"tor/reasoning_fraction": "-", "tor/perception_fraction": "--", "tor/overlap_fraction": ":"}


def read_metrics(folder: Path) -> dict[int, dict[str, float]]:
    """Metrics per step from veRL's file logger: ``folder/metrics/*.jsonl`` (one file per launch, in name order)
    and ``folder/metrics.jsonl``. A later file's value for a step wins (a resumed run logs the step again)."""
    files = sorted((folder / "metrics").glob("*.jsonl")) + [folder / "metrics.jsonl"]
    steps: dict[int, dict[str, float]] = {}
    for path in files:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                steps.setdefault(int(entry["step"]), {}).update(entry["data"])
    return steps


def validation_accuracies(metrics: dict[str, float]) -> dict[int, dict[str, float]]:
    """``{N: {data_source: mean accuracy}}`` from one step's ``val-core/<data_source>/<acc|reward>/mean@N``."""
    found: dict[int, dict[str, float]] = {}
    for name, value in metrics.items():
        match = VALIDATION_METRIC.match(name)
        if match:
            found.setdefault(int(match["n"]), {})[match["source"]] = float(value)
    return found


def read_run_info(folder: Path) -> dict[str, Any]:
    path = folder / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclass
class Row:
    """One table row: a method's accuracies per data source under one protocol (N samples per prompt)."""

    label: str
    source: str
    n: int
    accuracy: dict[str, float]
    paper: tuple[float, ...] | None = None
    # Which evaluation it is: with the image or without it (IMAGE=removed), graded by rule or by a judge.
    evaluation: str = ""
    image: str = PRESENT
    grading: str = "rule"


@dataclass
class Run:
    """A recipe run: its label, training metrics per step and table rows."""

    folder: Path
    name: str
    label: str
    steps: dict[int, dict[str, float]]
    rows: list[Row] = field(default_factory=list)
    # (launch, dataset role, record) of every launch that recorded what the overlong-prompt filter removed.
    filtered: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


def paper_row(info: dict[str, str]) -> tuple[float, ...] | None:
    """The paper's Table 4 numbers for a run of its exact setting, else None."""
    if info.get("recipe_model") == PAPER_MODEL and info.get("train_set") == PAPER_TRAIN_SET:
        return PAPER_TABLE4.get(info.get("label", ""))
    return None


def _evaluation_rows(folder: Path, label: str, paper: tuple[float, ...] | None, source: str) -> list[Row]:
    """Rows from the last validation logged in ``folder`` (one per protocol N found there)."""
    steps = read_metrics(folder)
    validated = [step for step, metrics in sorted(steps.items()) if validation_accuracies(metrics)]
    if not validated:
        return []
    last = validated[-1]
    found = validation_accuracies(steps[last])
    return [
        Row(label, source.format(step=last), n, accuracy, paper if n == 1 else None)
        for n, accuracy in sorted(found.items())
    ]


def _judged_rows(folder: Path, rows: list[Row], judge: Judge | None) -> list[Row]:
    """With a judge, an ``EVAL_PROTOCOL=tor`` evaluation's row again, graded as ToR's harness grades."""
    if judge is None or not rows or protocol_of(read_run_info(folder)) != TOR:
        return []
    evaluation = load_evaluation(folder, judge)
    failed = evaluation.ungraded()
    note = f", {JUDGED} {judge.model}" + (f" ({failed} responses ungraded: judge call failed)" if failed else "")
    return [
        Row(row.label, row.source + note, row.n, evaluation.accuracy(), row.paper, row.evaluation, row.image, "judge")
        for row in rows
    ]


def _mark_evaluation(rows: list[Row], folder: Path) -> list[Row]:
    """Rows of the evaluation in ``folder``, labelled with its image setting."""
    image = read_run_info(folder).get("image", PRESENT)
    for row in rows:
        row.evaluation, row.image = str(folder), image
        if image == REMOVED:
            row.source += ", image removed"
    return rows


def filter_records(info: dict[str, Any], launch: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``(launch, role, record)`` for each dataset of one launch's ``run.json`` (``verl_tor.launch.prompt_filter``)."""
    records = info.get(FILTER_RECORD_KEY) or {}
    return [(launch, role, records[role]) for role in sorted(records)]


def load_run(folder: Path, judge: Judge | None = None) -> Run:
    """A run folder (with ``eval/*`` evaluations, else its training-time validation) or one evaluation folder."""
    info = read_run_info(folder)
    name = info.get("experiment", folder.name)
    run = Run(folder, name, info.get("label", name), read_metrics(folder))
    run.filtered = filter_records(info, name)
    # A SMOKE run (tiny random model, synthetic data) says so in every row it gives.
    ours = "ours (SMOKE)" if info.get("smoke") == "1" else "ours"
    if info.get("kind") == "eval":
        run.rows = _mark_evaluation(_evaluation_rows(folder, run.label, None, f"{ours}: {name}"), folder)
        run.rows += _judged_rows(folder, run.rows, judge)
        return run
    paper = paper_row(info)
    for evaluation in sorted(path for path in (folder / "eval").glob("*") if path.is_dir()):
        run.filtered += filter_records(read_run_info(evaluation), f"{name}/eval/{evaluation.name}")
        source = f"{ours}: {name}, {read_run_info(evaluation).get('step', evaluation.name)}"
        # The paper's row stands beside evaluations with the image only.
        with_image = read_run_info(evaluation).get("image", PRESENT) == PRESENT
        rows = _evaluation_rows(evaluation, run.label, paper if with_image else None, source)
        rows = _mark_evaluation(rows, evaluation)
        run.rows += rows + _judged_rows(evaluation, rows, judge)
    if not run.rows:
        source = f"{ours}: {name}, training-time validation, step {{step}}"
        run.rows = _evaluation_rows(folder, run.label, paper, source)
    return run


def _percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}"


def benchmark_mean(accuracy: dict[str, float]) -> float | None:
    """Mean over the paper's five benchmarks, None unless all five were evaluated."""
    if not all(source in accuracy for source in BENCHMARKS):
        return None
    return sum(accuracy[source] for source in BENCHMARKS) / len(BENCHMARKS)


def markdown_table(rows: Sequence[Row]) -> str:
    """Table 4's columns (the five benchmarks, mean), then any other data source; a paper row above ours."""
    others = sorted({source for row in rows for source in row.accuracy if source not in BENCHMARKS})
    header = ["method", "source", *BENCHMARKS.values(), "mean", *(DATA_SOURCES.get(s, s) for s in others)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    shown_paper: set[str] = set()
    for row in rows:
        if row.paper is not None and row.label not in shown_paper:
            shown_paper.add(row.label)
            paper_cells = [f"{value:.1f}" for value in row.paper[:-1]] + [f"{row.paper[-1]:.2f}"] + [""] * len(others)
            lines.append(f"| {row.label} | paper (7B, Geometry3K, LLM judge) | " + " | ".join(paper_cells) + " |")
        cells = [_percent(row.accuracy.get(source)) for source in BENCHMARKS]
        cells.append(_percent(benchmark_mean(row.accuracy), digits=2))
        cells += [_percent(row.accuracy.get(source)) for source in others]
        lines.append(f"| {row.label} | {row.source} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def filter_table(runs: Sequence[Run]) -> str:
    """One row per dataset a launch built: rows before and after veRL's length filter, and the removed per source."""
    lines = [
        "| run | dataset | max prompt tokens | rows kept / read | removed | removed by data source |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        for launch, role, record in run.filtered:
            by_source = ", ".join(
                f"{DATA_SOURCES.get(s, s)} {n:,}" for s, n in record["removed_by_data_source"].items()
            )
            lines.append(
                f"| {launch} | {role} | {record['max_prompt_length']:,} | {record['rows_after']:,} / "
                f"{record['rows_before']:,} | {record['removed']:,} | {by_source or '–'} |"
            )
    return "\n".join(lines)


def image_gap_table(rows: Sequence[Row]) -> str:
    """Per evaluation without the image (``IMAGE=removed``) and its counterpart with it (same run, step, protocol
    and grading): accuracy with / without (gap = without - with), per benchmark and the mean."""
    with_image = {
        (row.label, row.source, row.n, row.grading): row for row in rows if row.image == PRESENT and row.evaluation
    }
    sources = [s for s in BENCHMARKS if any(s in row.accuracy for row in rows)]
    others = sorted({s for row in rows for s in row.accuracy if s not in BENCHMARKS})
    header = ["method", "source", "n", *(DATA_SOURCES.get(s, s) for s in sources + others)]
    if sources == list(BENCHMARKS):
        header.append("mean")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if row.image != REMOVED:
            continue
        present_source = row.source.replace(", image removed", "")
        pair = with_image.get((row.label, present_source, row.n, row.grading))
        if pair is None:
            continue
        cells = []
        columns = [(pair.accuracy.get(s), row.accuracy.get(s)) for s in sources + others]
        if "mean" in header:
            columns.append((benchmark_mean(pair.accuracy), benchmark_mean(row.accuracy)))
        for present, removed in columns:
            if present is None or removed is None:
                cells.append("–")
            else:
                gap = f"{100 * (removed - present):+.1f}".replace("-", "−")
                cells.append(f"{_percent(present)} / {_percent(removed)} ({gap})")
        lines.append(f"| {row.label} | {present_source} | {row.n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def markdown_report(
    runs: Sequence[Run],
    png: str | None = None,
    pages: dict[str, str] | None = None,
    comparisons: str | None = None,
) -> str:
    """The report: one table per protocol (greedy first), each with the grading note, the accuracy without the
    image, the paired comparison (``comparisons``, Markdown of ``verl_tor.eval.compare``), then the curves, the rows
    the prompt filter removed and the token inspector pages (``pages``: run name → link) of the ToR runs."""
    rows = [row for run in runs for row in run.rows]
    parts = ["# ToR reproduction results", ""]
    for n in sorted({row.n for row in rows}):
        title = (
            "greedy decoding (n = 1, EVAL_PROTOCOL=tor), the paper's protocol"
            if n == 1
            else f"avg@{n}: mean of {n} samples (EVAL_PROTOCOL=avg8)"
        )
        table_rows = [row for row in rows if row.n == n]
        note = GRADING_NOTE
        if any(row.grading == "judge" for row in table_rows):
            note += " " + JUDGE_NOTE
        elif n == 1 and any(row.evaluation for row in table_rows):
            note += " " + UNJUDGED_NOTE
        parts += [f"## Accuracy (%), {title}", "", f"> {note}", ""]
        parts += [markdown_table(table_rows), ""]
    gaps = image_gap_table(rows)
    if gaps:
        note = (
            "Every image deleted from the prompt (`IMAGE=removed`: the conversation without its `<image>` "
            "placeholders and without images), beside the same model with it: with / without (gap, points)."
        )
        parts += ["## Accuracy (%) with and without the image", "", f"> {note}", "", gaps, ""]
    if comparisons:
        parts += ["## Paired comparison", "", comparisons, ""]
    if png:
        parts += ["## Training curves", "", f"![training curves]({png})", ""]
    if any(run.filtered for run in runs):
        note = (
            "Prompts longer than the budget (image tokens included) that veRL's `data.filter_overlong_prompts` drops."
        )
        parts += ["## Rows removed by the prompt-length filter", "", f"> {note}", "", filter_table(runs), ""]
    if pages:
        parts += [
            "## Token inspector",
            "",
            "Which response tokens ToR weighted, per recorded step (`tor.inspect`):",
            "",
        ]
        parts += [f"- [{name}]({link})" for name, link in pages.items()] + [""]
    return "\n".join(parts)


def _series(steps: dict[int, dict[str, float]], name: str) -> tuple[list[int], list[float]]:
    points = [(step, metrics[name]) for step, metrics in sorted(steps.items()) if name in metrics]
    return [step for step, _ in points], [float(value) for _, value in points]


def plot_curves(runs: Iterable[Run], path: str | Path) -> None:
    """One PNG: a panel per curve group, a colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(CURVE_PANELS), figsize=(5 * len(CURVE_PANELS), 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, run in enumerate(runs):
        colour = colours[index % len(colours)]
        for axis, (title, names) in zip(axes, CURVE_PANELS, strict=True):
            axis.set_title(title)
            axis.set_xlabel("step")
            if not names:
                names = sorted(
                    {name for metrics in run.steps.values() for name in metrics if name.startswith("val-core/")}
                )
            for name in names:
                x, y = _series(run.steps, name)
                if x:
                    label = run.name if len(names) == 1 else f"{run.name}: {name.split('/', 1)[1]}"
                    axis.plot(x, y, FRACTION_STYLES.get(name, "-"), color=colour, marker=".", label=label)
    for axis in axes:
        if axis.has_data():
            axis.legend(fontsize="x-small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def paired_comparisons(runs: Sequence[Run], judge: Judge | None) -> tuple[str, list[compare.Comparison]]:
    """``verl_tor.eval.compare`` of every run's latest evaluation with the image against the first run's, per
    protocol that the first run was evaluated with (runs without such an evaluation are left out)."""

    def latest(run: Run, protocol: str) -> Path | None:
        try:
            return compare.evaluation_folder(run.folder, protocol, PRESENT)
        except EvaluationError:
            return None

    found: list[compare.Comparison] = []
    for protocol in (TOR, "avg8"):
        baseline, *others = [latest(run, protocol) for run in runs]
        others = [folder for folder in others if folder is not None]
        if baseline is None or not others:
            continue
        arm = compare.load_arm(str(baseline), protocol, PRESENT, judge)
        found += [compare.compare(arm, compare.load_arm(str(other), protocol, PRESENT, judge)) for other in others]
    return compare.markdown(found), found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.eval.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (OUTPUT_DIR/<experiment>) or eval folders")
    parser.add_argument("--out", type=Path, required=True, help="Markdown file to write")
    parser.add_argument("--png", type=Path, help="training-curves PNG (default: next to --out, <out>_curves.png)")
    parser.add_argument(
        "--compare", action="store_true", help="paired comparison of each run with the first (verl_tor.eval.compare)"
    )
    add_judge_arguments(parser)
    args = parser.parse_args(argv)
    missing = [str(folder) for folder in args.runs if not folder.is_dir()]
    if missing:
        parser.error("no such run or evaluation folder: " + ", ".join(missing))
    judge = judge_from_arguments(parser, args)
    try:
        runs = [load_run(folder, judge) for folder in args.runs]
        if not any(run.rows for run in runs):
            raise EvaluationError("no validation results (val-core/* metrics) in " + ", ".join(map(str, args.runs)))
        comparisons, found = paired_comparisons(runs, judge) if args.compare else ("", [])
    except EvaluationError as error:
        sys.exit(f"verl_tor.eval.report: {error}")
    png = args.png or args.out.with_name(args.out.stem + "_curves.png")
    plot_curves(runs, png)
    if found:
        compare_png = args.out.with_name(args.out.stem + "_compare.png")
        compare.plot(found, compare_png)
        comparisons += f"\n![paired differences]({os.path.relpath(compare_png, args.out.parent)})\n"
    # Each ToR run that recorded tokens gets its inspector page written next to its checkpoints' folder.
    pages = {
        run.name: os.path.relpath(write_page(str(run.folder)), args.out.parent)
        for run in runs
        if find_inspect_file(str(run.folder))
    }
    args.out.write_text(markdown_report(runs, os.path.relpath(png, args.out.parent), pages, comparisons))
    if judge is not None and judge.failed_calls:
        print(f"warning: {judge.failed_calls} judge calls failed; those responses are ungraded", file=sys.stderr)
    print(f"wrote {args.out} and {png}" + "".join(f", {page}" for page in pages.values()))


if __name__ == "__main__":
    main()
