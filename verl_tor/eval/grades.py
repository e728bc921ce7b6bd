"""One evaluation folder of ``recipes/eval.sh`` as per-item grades: what the report and the paired comparison read.

An evaluation folder (``<run>/eval/<step>_<protocol>[_noimage]/``) holds ``run.json`` (protocol, image, the parquet
files evaluated) and veRL's validation dump ``generations/<step>.jsonl``: one line per sample with the decoded
prompt and response, the ground truth and every key ``verl_tor.eval.rewards.compute_score`` returned, among them
``acc`` and ``row`` (``data_source:split:index``). Samples are grouped by ``row``, so an item keeps all its samples
(avg@8: eight) and two evaluations pair item by item.

Grades are the dumped rule-based ``acc``, or, with a judge and ``EVAL_PROTOCOL=tor``, the harness's grading
(``verl_tor.eval.judge.harness_grade``) of each dumped response against its own parquet row.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from verl_tor.eval.judge import Judge, harness_grade
from verl_tor.eval.rewards import row_id, source_of_row

TOR, AVG8 = "tor", "avg8"
PROTOCOLS = (TOR, AVG8)
PRESENT, REMOVED = "present", "removed"


class EvaluationError(Exception):
    """An evaluation folder that cannot be graded as asked (named in the message)."""


@dataclass
class Evaluation:
    """Per-item grades of one evaluation: ``grades[data_source][row]`` is the list of the item's sample grades
    (``None``: a judge call failed, the sample is ungraded)."""

    folder: Path
    info: dict[str, Any]
    grading: str  # "rule" or "judge <model>"
    grades: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)

    @property
    def protocol(self) -> str:
        return protocol_of(self.info)

    @property
    def image(self) -> str:
        return self.info.get("image", PRESENT)

    def ungraded(self) -> int:
        """Samples left ungraded because a judge call failed."""
        return sum(grade is None for rows in self.grades.values() for samples in rows.values() for grade in samples)

    def item_grades(self, data_source: str) -> dict[str, list[float]]:
        """``{row: graded samples}`` of one data source, items with no graded sample left out."""
        items = {row: [g for g in samples if g is not None] for row, samples in self.grades[data_source].items()}
        return {row: samples for row, samples in items.items() if samples}

    def accuracy(self) -> dict[str, float]:
        """``{data_source: mean over items of the item's mean grade}`` (veRL's ``mean@N`` when every item has N)."""
        result = {}
        for source in self.grades:
            items = self.item_grades(source)
            if items:
                result[source] = sum(sum(s) / len(s) for s in items.values()) / len(items)
        return result


def protocol_of(info: dict[str, Any]) -> str:
    """An evaluation's protocol; evaluations from before protocols existed recorded ``mode`` greedy / avg8."""
    protocol = info.get("protocol") or {"greedy": TOR, "avg8": AVG8}.get(info.get("mode", ""), "")
    return protocol


def read_info(folder: Path) -> dict[str, Any]:
    path = folder / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def read_samples(folder: Path) -> list[dict[str, Any]]:
    """Every sample veRL dumped into ``folder/generations/*.jsonl``."""
    files = sorted((folder / "generations").glob("*.jsonl"))
    if not files:
        raise EvaluationError(f"{folder}: no validation dump (generations/*.jsonl); was it made by recipes/eval.sh?")
    return [json.loads(line) for path in files for line in path.read_text().splitlines() if line.strip()]


def _grouped(samples: Iterable[dict[str, Any]], folder: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for sample in samples:
        row = sample.get("row")
        if not row:
            raise EvaluationError(
                f"{folder}: a dumped sample names no dataset row (its reward function returned no 'row'): grade "
                "with reward.custom_reward_function.path=pkg://verl_tor.eval.rewards on data whose extra_info has "
                "an index (verl_tor.data_prep writes one)"
            )
        grouped[source_of_row(row)][row].append(sample)
    return grouped


def parquet_rows(files: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{row id: {"question", "ground_truth", "extra_info"}}`` of the evaluated parquet files; the question is the
    user turn's text without image placeholders, as the model read it."""
    import pandas as pd

    rows: dict[str, dict[str, Any]] = {}
    for path in files:
        for record in pd.read_parquet(path).to_dict("records"):
            extra_info = dict(record.get("extra_info") or {})
            if extra_info.get("choices") is not None:
                extra_info["choices"] = list(extra_info["choices"])
            key = row_id(record["data_source"], extra_info)
            if key in rows:
                raise EvaluationError(f"{path}: row {key} occurs twice in the evaluated files")
            user = next(m["content"] for m in record["prompt"] if m["role"] == "user")
            question = user.replace("<image>", "").strip()
            rows[key] = {
                "question": question,
                "ground_truth": record["reward_model"]["ground_truth"],
                "extra": extra_info,
            }
    return rows


def load_evaluation(folder: Path, judge: Judge | None = None) -> Evaluation:
    """Grades of one evaluation folder: the dumped ``acc`` of each sample, or, with ``judge`` on an
    ``EVAL_PROTOCOL=tor`` evaluation, the harness's grading of each response against its own row."""
    info = read_info(folder)
    grouped = _grouped(read_samples(folder), folder)
    if judge is None or protocol_of(info) != TOR:
        grades = {
            source: {
                row: [float(s["acc"] if "acc" in s else s["score"]) for s in samples] for row, samples in by_row.items()
            }
            for source, by_row in grouped.items()
        }
        return Evaluation(folder, info, "rule", grades)
    files = [path for path in str(info.get("val_files", "")).split(",") if path]
    rows = parquet_rows(files)
    work = []
    for by_row in grouped.values():
        for row, samples in by_row.items():
            if row not in rows:
                raise EvaluationError(f"{folder}: dumped row {row} is in none of the evaluated files {files}")
            for sample in samples:
                if str(sample.get("gts")) != str(rows[row]["ground_truth"]):
                    raise EvaluationError(
                        f"{folder}: row {row} has ground truth {rows[row]['ground_truth']!r} in {files} but was "
                        f"evaluated against {sample.get('gts')!r}: the data changed since the evaluation"
                    )
                work.append((row, sample))

    def grade(item: tuple[str, dict[str, Any]]) -> tuple[str, float | None]:
        row, sample = item
        entry = rows[row]
        return row, harness_grade(
            source_of_row(row), entry["question"], sample["output"], entry["ground_truth"], entry["extra"], judge
        )

    grades: dict[str, dict[str, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    with ThreadPoolExecutor(max_workers=judge.workers) as pool:
        results = pool.map(grade, work)
        for row, value in tqdm(results, total=len(work), desc=f"judging {folder.name}", unit="response", mininterval=2):
            grades[source_of_row(row)][row].append(value)
    return Evaluation(folder, info, f"judge {judge.model}", {s: dict(r) for s, r in grades.items()})
