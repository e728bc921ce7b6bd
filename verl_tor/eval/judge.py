"""Optional LLM-judge answer extraction for ``verl_tor.eval.report`` (off by default).

The paper had an LLM judge (Gemini-2.0-Flash) extract each answer; our training reward and ``eval.sh`` grade the
last ``\\boxed{}`` by rule. With ``--judge-url`` the report also asks an OpenAI-compatible chat-completions endpoint
for the final answer of every response that ``eval.sh`` dumped (``<eval dir>/generations/*.jsonl``) and grades that
answer with the same rule (``verl_tor.eval.rewards.compute_score`` on ``\\boxed{<answer>}``). A response without an
answer ("NONE") is wrong.

veRL's dumps hold the decoded prompt, response and ground truth but not the benchmark, so each response is matched
to its benchmark row by question text in the evaluation's parquet files (``val_files`` in its ``run.json``).
An endpoint that needs a key gets ``OPENAI_API_KEY`` from the environment as a bearer token.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXTRACTION_PROMPT = (
    "Question:\n{question}\n\nModel response:\n{response}\n\n"
    "What final answer does the model response give to the question? For a multiple-choice question reply with "
    "the option letter(s), for a yes/no question with Yes or No, otherwise with the final value or expression. "
    "Reply with the answer only, or NONE if the response gives no final answer."
)
NO_ANSWER = "NONE"
_WHITESPACE = re.compile(r"\s+")


def question_key(text: str) -> str:
    """A prompt's question for matching: image placeholders removed, white space collapsed."""
    return _WHITESPACE.sub(" ", text.replace("<image>", "")).strip()


def dumped_question(decoded_prompt: str) -> str:
    """The user turn of a decoded chat prompt as veRL dumps it (special tokens skipped):
    ``system\\n…\\nuser\\n<question>\\nassistant\\n``."""
    user = decoded_prompt.rsplit("user\n", 1)[-1]
    return question_key(user.removesuffix("\n").removesuffix("assistant").removesuffix("\n"))


@dataclass(frozen=True)
class Judge:
    """An OpenAI-compatible endpoint (``url`` ends before ``/chat/completions``, e.g. ``http://host:8000/v1``)."""

    url: str
    model: str
    timeout_s: float = 120.0
    workers: int = 16

    def extract(self, question: str, response: str) -> str:
        body = {
            "model": self.model,
            "temperature": 0,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": EXTRACTION_PROMPT.format(question=question, response=response)}],
        }
        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        request = urllib.request.Request(
            self.url.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(), headers=headers
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
            return json.load(reply)["choices"][0]["message"]["content"].strip()


def benchmark_rows(val_files: Iterable[str]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """``{question key: (data_source, ground truth, extra_info)}`` of the evaluation's parquet rows."""
    import pandas as pd

    rows = {}
    for path in val_files:
        for row in pd.read_parquet(path).to_dict("records"):
            extra_info = {key: value for key, value in (row.get("extra_info") or {}).items()}
            if extra_info.get("choices") is not None:
                extra_info["choices"] = list(extra_info["choices"])
            question = question_key(row["prompt"][0]["content"])
            rows[question] = (row["data_source"], row["reward_model"]["ground_truth"], extra_info)
    return rows


def judged_accuracy(eval_dir: Path, judge: Judge) -> tuple[dict[str, float], int]:
    """``({data_source: accuracy of the judge-extracted answers}, responses matched to no benchmark row)``."""
    from verl_tor.eval.rewards import compute_score

    info: Mapping[str, str] = json.loads((eval_dir / "run.json").read_text())
    rows = benchmark_rows(path for path in info.get("val_files", "").split(",") if path)
    samples = [
        json.loads(line)
        for path in sorted((eval_dir / "generations").glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    matched = [(rows.get(dumped_question(sample["input"])), sample) for sample in samples]
    known = [(row, sample) for row, sample in matched if row is not None]

    def grade(item: tuple[tuple[str, str, dict[str, Any]], dict[str, Any]]) -> tuple[str, float]:
        (data_source, ground_truth, extra_info), sample = item
        answer = judge.extract(dumped_question(sample["input"]), sample["output"])
        if answer.upper() == NO_ANSWER:
            return data_source, 0.0
        result = compute_score(data_source, f"\\boxed{{{answer}}}", ground_truth, extra_info, format_weight=0.0)
        return data_source, float(result["acc"])

    scores: dict[str, list[float]] = defaultdict(list)
    with ThreadPoolExecutor(max_workers=judge.workers) as pool:
        for data_source, acc in pool.map(grade, known):
            scores[data_source].append(acc)
    return {source: sum(values) / len(values) for source, values in scores.items()}, len(matched) - len(known)
