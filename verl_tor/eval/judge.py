"""The LLM judge of ``EVAL_PROTOCOL=tor``: any OpenAI-compatible chat-completions endpoint, cached, retried, counted.

ToR's numbers come from the NoisyRollout evaluation harness, where an LLM (Gemini-2.0-Flash) extracts answers and,
for MathVerse, judges them against the reference. :func:`harness_grade` grades one response the way that harness
grades its benchmark (docs/evaluation.md has the table, with every difference marked):

* HallusionBench: the last ``\\boxed{}``, lower-cased, equals ``yes`` / ``no`` (no LLM);
* MathVerse: the last ``\\boxed{}`` (else the LLM's extraction), then the LLM judges it against the reference;
* MathVista, MathVision: the LLM's extraction equals the ground truth exactly (white space stripped);
* WeMath: the LLM extracts the option letter, compared with the ground truth's (plain accuracy);
* any other data set: the LLM's extraction graded by ``verl_tor.eval.rewards`` (``\\boxed{<answer>}``).

The prompts are ours. :class:`Judge` sends them to ``<url>/chat/completions`` at temperature 0 (``OPENAI_API_KEY``,
if set, as the bearer token), retries a failed call with exponential back-off and caches every reply on disk by
(judge model, prompt), the prompt holding the question and the response: re-grading costs no call. A call that
still fails leaves its response ungraded (``None``): callers count those and never grade them wrong.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_tor.eval.rewards import chosen_letters, compute_score, final_boxed_answer

NO_ANSWER = "NONE"
EXTRACTION_PROMPT = (
    "Question:\n{question}\n\nModel response:\n{response}\n\n"
    "What final answer does the model response give to the question? For a multiple-choice question reply with "
    "the option letter(s), for a yes/no question with Yes or No, otherwise with the final value or expression. "
    "Reply with the answer only, or NONE if the response gives no final answer."
)
LETTER_PROMPT = (
    "Question:\n{question}\n\nModel response:\n{response}\n\n"
    "Which option does the model response choose? Reply with the option letter only (A, B, C, ...), or NONE if "
    "it chooses none."
)
JUDGEMENT_PROMPT = (
    "Question:\n{question}\n\nReference answer:\n{reference}\n\nCandidate answer:\n{candidate}\n\n"
    "Does the candidate answer agree with the reference answer? For a multiple-choice question they agree only "
    "when they name the same option; otherwise the same value in another form (0.5 and 1/2, 50 cm and 0.5 m) "
    "agrees. Reply with 1 if they agree and 0 if not, nothing else."
)


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/verl_tor/judge.sqlite3`` (``~/.cache`` without it)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "verl_tor" / "judge.sqlite3"


class ReplyCache:
    """Judge replies on disk (SQLite, safe across threads and processes), keyed by a hash of (model, prompt)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT, reply TEXT)")
        self._db.commit()

    @staticmethod
    def key(model: str, prompt: str) -> str:
        return hashlib.sha256(json.dumps([model, prompt]).encode()).hexdigest()

    def get(self, model: str, prompt: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (self.key(model, prompt),)).fetchone()
        return None if row is None else row[0]

    def put(self, model: str, prompt: str, reply: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?)", (self.key(model, prompt), model, reply))
            self._db.commit()


@dataclass
class Judge:
    """An OpenAI-compatible endpoint (``url`` ends before ``/chat/completions``, e.g. ``http://host:8000/v1``)."""

    url: str
    model: str
    cache: ReplyCache
    retries: int = 4  # attempts after the first
    backoff_s: float = 2.0  # first wait; doubles per retry
    timeout_s: float = 120.0
    workers: int = 16
    calls: int = field(default=0, init=False)  # HTTP requests sent (cache hits send none)
    failed_calls: int = field(default=0, init=False)  # prompts that got no usable reply after every retry
    _count_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def ask(self, prompt: str) -> str | None:
        """The judge's reply to one prompt (from the cache when asked before), or None after every retry failed."""
        cached = self.cache.get(self.model, prompt)
        if cached is not None:
            return cached
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            with self._count_lock:
                self.calls += 1
            try:
                reply = self._post(prompt)
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                # Connection errors, HTTP errors (urllib's are OSErrors), time-outs, malformed JSON or replies.
                continue
            self.cache.put(self.model, prompt, reply)
            return reply
        with self._count_lock:
            self.failed_calls += 1
        return None

    def _post(self, prompt: str) -> str:
        body = {
            "model": self.model,
            "temperature": 0,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": prompt}],
        }
        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        request = urllib.request.Request(
            self.url.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(), headers=headers
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
            content = json.load(reply)["choices"][0]["message"]["content"]
        if not isinstance(content, str):
            raise TypeError(f"reply content is {type(content).__name__}")
        return content.strip()

    def extract(self, question: str, response: str, letter: bool = False) -> str | None:
        """The final answer the judge reads in ``response`` (``NONE`` when it gives none), or None on failure."""
        template = LETTER_PROMPT if letter else EXTRACTION_PROMPT
        return self.ask(template.format(question=question, response=response))

    def agrees(self, question: str, candidate: str, reference: str) -> float | None:
        """1.0 / 0.0: the judge's verdict on ``candidate`` against ``reference``; None on failure or a reply that
        is neither 1 nor 0 (counted as a failed call)."""
        reply = self.ask(JUDGEMENT_PROMPT.format(question=question, reference=reference, candidate=candidate))
        if reply is None:
            return None
        verdict = reply.strip().strip(".").strip()
        if verdict in ("0", "1"):
            return float(verdict)
        with self._count_lock:
            self.failed_calls += 1
        return None


# How ToR's harness grades each benchmark (the data_source names of verl_tor.eval.benchmarks).
HARNESS_RULES = {
    "hallusionbench": "last \\boxed{} lower-cased equals yes/no (no LLM)",
    "mathverse": "last \\boxed{} (else LLM extraction), then LLM judgement against the reference",
    "mathvista": "LLM extraction, exact match",
    "mathvision": "LLM extraction, exact match",
    "wemath": "LLM extraction of the option letter, plain accuracy",
}
OTHER_RULE = "LLM extraction graded by verl_tor.eval.rewards"


def harness_grade(
    data_source: str, question: str, response: str, ground_truth: str, extra_info: dict[str, Any], judge: Judge
) -> float | None:
    """One response graded as ToR's harness grades ``data_source`` (module docstring); None when a judge call
    failed (the response stays ungraded)."""
    if data_source == "hallusionbench":
        # The harness drops empty boxes first (a response may close with "\boxed{}").
        return float(final_boxed_answer(response.replace("\\boxed{}", "")).lower() == ground_truth.strip().lower())
    if data_source == "mathverse":
        answer = final_boxed_answer(response) or judge.extract(question, response)
        if answer is None:
            return None
        return 0.0 if answer.strip().upper() == NO_ANSWER else judge.agrees(question, answer, ground_truth)
    answer = judge.extract(question, response, letter=data_source == "wemath")
    if answer is None:
        return None
    answer = answer.strip()
    if answer.upper() == NO_ANSWER:
        return 0.0
    if data_source == "wemath":
        return float(chosen_letters(answer) == chosen_letters(ground_truth))
    if data_source in ("mathvista", "mathvision"):
        return float(answer == ground_truth.strip())
    result = compute_score(data_source, f"\\boxed{{{answer}}}", ground_truth, extra_info, format_weight=0.0)
    return float(result["acc"])


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    """``--judge-url``, ``--judge-model``, ``--judge-cache``, ``--judge-retries``: the judge options of every
    evaluation command line."""
    parser.add_argument(
        "--judge-url", help="OpenAI-compatible endpoint (…/v1) grading EVAL_PROTOCOL=tor as ToR's harness"
    )
    parser.add_argument("--judge-model", help="model name the endpoint serves (shown in every judged row)")
    parser.add_argument("--judge-cache", type=Path, default=None, help=f"reply cache (default {default_cache_path()})")
    parser.add_argument("--judge-retries", type=int, default=4, help="retries of a failed call, with back-off")


def judge_from_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Judge | None:
    if bool(args.judge_url) != bool(args.judge_model):
        parser.error("--judge-url and --judge-model go together")
    if not args.judge_url:
        return None
    cache = ReplyCache(args.judge_cache or default_cache_path())
    return Judge(args.judge_url, args.judge_model, cache, retries=args.judge_retries)
