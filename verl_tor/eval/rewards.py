"""Rule-based reward for every data source written by ``data_prep`` (veRL ``reward.custom_reward_function``).

The response is expected in the paper's format: reasoning inside ``<think>…</think>``, then the final answer inside
``\\boxed{}``. The last ``\\boxed{}`` of the response is the prediction; it is graded by the answer type that
``data_prep`` records in ``extra_info["answer_type"]``:

* ``multiple_choice`` -- the ground truth is one option letter (or several, comma-separated: ``"A,C"``); the
  prediction is right when it names the same letter(s) (``B``, ``(B)``, ``B. 35°``, ``\\text{B}``) or, for a single
  correct option, when it is equivalent to that option's text (from ``extra_info["choices"]``).
* ``yes_no`` -- the ground truth is ``yes`` or ``no`` (HallusionBench); the prediction's first word decides.
* ``free_form`` -- math-verify decides equivalence (``\\frac{1}{2}`` = ``0.5``, ``17^\\circ`` = ``17``), mathruler's
  ``grade_answer`` is the fallback; a ground truth made only of words is compared as words, case-insensitively.

Without ``extra_info`` the type is inferred from the ground truth (``yes``/``no``, option letters, else free-form).

``compute_score`` returns ``{"score", "acc", "format", "pred", "row"}``: ``acc`` is pure accuracy (0 or 1),
``format`` is 1 when the response is ``<think>…</think>`` followed by a ``\\boxed{}``, and
``score = (1 - w) * acc + w * format`` with ``w = format_weight`` (default 0.1, as veRL's geo3k scorer; 0 gives a
pure accuracy reward). ``row`` names the dataset row the response answers (:func:`row_id`, ``""`` without an
``extra_info["index"]``): veRL dumps every returned key with each validation sample
(``trainer.validation_data_dir``) and skips string values in its metrics, so ``verl_tor.eval`` matches each dumped
response to its own benchmark row by it, never by question text (rows share texts).

Bounded time on hostile output. veRL 0.9.1 calls a synchronous scorer through ``loop.run_in_executor`` (a worker
thread of a Ray actor), where math-verify's ``signal.alarm`` timeouts cannot run. Equivalence checks therefore run
in a small pool of grader processes (``python -m verl_tor.eval.rewards --grading-worker``): there math-verify's and
mathruler's own timeouts work (main thread), and the caller kills a grader that misses a hard deadline
(``grading_timeout_s``) and counts the answer wrong. Inputs are bounded before parsing: only the last
``MAX_TAIL_CHARS`` characters are searched for ``\\boxed{}``, and a prediction longer than ``MAX_ANSWER_CHARS`` or
nested deeper than ``MAX_BRACE_DEPTH`` braces is wrong without parsing. No response raises (only an invalid
setting such as ``format_weight=2`` does); a missing answer scores 0. ``pred`` is cut to ``MAX_ANSWER_CHARS``.

veRL configuration (keys verified in veRL 0.9.1 ``trainer/config/reward/reward.yaml`` and
``trainer/ppo/reward.py::get_custom_reward_fn``)::

    reward.custom_reward_function.path=pkg://verl_tor.eval.rewards
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.format_weight=0.1

``reward_kwargs`` are merged into every call (and win over veRL's own keyword arguments): ``format_weight``,
``grading_timeout_s`` and ``grading_processes`` (size of the per-process grader pool, fixed by the first call).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

from mathruler.grader import extract_boxed_content

MULTIPLE_CHOICE = "multiple_choice"
YES_NO = "yes_no"
FREE_FORM = "free_form"
ANSWER_TYPES = (MULTIPLE_CHOICE, YES_NO, FREE_FORM)

DEFAULT_FORMAT_WEIGHT = 0.1
DEFAULT_GRADING_TIMEOUT_S = 5.0
DEFAULT_GRADING_PROCESSES = 4
MAX_TAIL_CHARS = 20_000
MAX_ANSWER_CHARS = 400
MAX_BRACE_DEPTH = 32

_GRADING_WORKER_FLAG = "--grading-worker"
_WORKER_READY = "ready"
_WORKER_START_TIMEOUT_S = 120.0
# math-verify's and mathruler's own timeouts inside a grader (signal.alarm takes whole seconds).
_INNER_TIMEOUT_S = 1

_TEXT_WRAPPER = re.compile(r"\\(?:text|mathrm|textbf|mathbf|textrm|operatorname)\s*\{([^{}]*)\}")
_ANSWER_PREFIX = re.compile(r"^(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is)?\s*[:：]?\s*", re.I)
_LETTER_LIST = re.compile(r"[A-Z](?:\s*(?:,|;|&|/|\band\b)\s*[A-Z])*")
_LETTER_THEN_TEXT = re.compile(r"(?:\(([A-Z])\)|([A-Z])[.:：)．、])\s*\S")
_PLAIN_WORDS = re.compile(r"[A-Za-z][A-Za-z '\-]*")


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: Mapping[str, Any] | None = None,
    format_weight: float = DEFAULT_FORMAT_WEIGHT,
    grading_timeout_s: float = DEFAULT_GRADING_TIMEOUT_S,
    grading_processes: int = DEFAULT_GRADING_PROCESSES,
    **kwargs: Any,
) -> dict[str, float | str]:
    """Score one response. ``data_source`` and unknown keyword arguments (veRL passes some) do not affect grading."""
    if not 0.0 <= format_weight <= 1.0:
        raise ValueError(f"format_weight must lie in [0, 1], got {format_weight}")
    if grading_timeout_s <= 0 or grading_processes < 1:
        raise ValueError(
            f"need grading_timeout_s > 0 and grading_processes >= 1, got {grading_timeout_s}, {grading_processes}"
        )
    response = solution_str if isinstance(solution_str, str) else ""
    gold = str(ground_truth).strip()
    info = extra_info if isinstance(extra_info, Mapping) else {}
    choices = _as_strings(info.get("choices"))
    answer_type = info.get("answer_type")
    if answer_type not in ANSWER_TYPES:
        answer_type = infer_answer_type(gold)
    pred = final_boxed_answer(response)
    grader = _Grader(grading_timeout_s, grading_processes)
    acc = 1.0 if pred and gold and grader.is_correct(pred, gold, answer_type, choices) else 0.0
    fmt = 1.0 if has_reasoning_format(response) else 0.0
    score = (1.0 - format_weight) * acc + format_weight * fmt
    return {
        "score": score,
        "acc": acc,
        "format": fmt,
        "pred": pred[:MAX_ANSWER_CHARS],
        "row": row_id(data_source, info),
    }


def row_id(data_source: str, extra_info: Mapping[str, Any]) -> str:
    """``"<data_source>:<split>:<index>"`` of a row ``verl_tor.data_prep`` wrote (its ``extra_info`` keeps the split
    and the row's position in it); ``""`` when ``extra_info`` has no index."""
    index = extra_info.get("index")
    if index is None:
        return ""
    return f"{data_source}:{extra_info.get('split') or ''}:{int(index)}"


def source_of_row(row: str) -> str:
    """The ``data_source`` part of a :func:`row_id` (data sources may themselves hold ``:``-free slashes)."""
    return row.rsplit(":", 2)[0]


def infer_answer_type(ground_truth: str) -> str:
    """The answer type a ground truth implies when ``extra_info`` does not say."""
    if ground_truth.lower() in ("yes", "no"):
        return YES_NO
    if _LETTER_LIST.fullmatch(ground_truth):
        return MULTIPLE_CHOICE
    return FREE_FORM


def final_boxed_answer(response: str) -> str:
    """Content of the last complete ``\\boxed{}`` in the response's tail, stripped; ``""`` when there is none."""
    tail = response[-MAX_TAIL_CHARS:]
    content = extract_boxed_content(tail)
    # mathruler returns the string "None" when nothing is boxed.
    if content == "None" and "\\boxed{None}" not in tail:
        return ""
    return content.strip()


def has_reasoning_format(response: str) -> bool:
    """True for one ``<think>…</think>`` block at the start followed by a complete ``\\boxed{}``."""
    text = response.strip()
    if not text.startswith("<think>") or text.count("<think>") != 1 or text.count("</think>") != 1:
        return False
    return final_boxed_answer(text.split("</think>", 1)[1]) != ""


def chosen_letters(prediction: str) -> frozenset[str] | None:
    """Option letters a prediction names (``B``, ``(b)``, ``A, C``, ``B. 35°``, ``\\text{B}``), or None."""
    text = _ANSWER_PREFIX.sub("", _plain_text(prediction)).rstrip(".:：。 ")
    if len(text) == 1 and text.isalpha():
        return frozenset(text.upper())
    if re.fullmatch(r"\(([A-Za-z])\)", text):
        return frozenset(text[1].upper())
    if _LETTER_LIST.fullmatch(text):
        return frozenset(re.findall(r"[A-Z]", text))
    match = _LETTER_THEN_TEXT.match(text)
    if match:
        return frozenset(match.group(1) or match.group(2))
    return None


def yes_or_no(prediction: str) -> str | None:
    """``"yes"`` or ``"no"`` when the prediction's first word is one of them."""
    words = re.findall(r"[a-z]+", _plain_text(prediction).lower())
    return words[0] if words and words[0] in ("yes", "no") else None


def _plain_text(text: str) -> str:
    """The text with ``\\text{…}``-style wrappers, ``$`` and bold markers removed."""
    previous = None
    while previous != text:
        previous, text = text, _TEXT_WRAPPER.sub(r"\1", text)
    return text.replace("$", "").replace("**", "").strip()


def _as_strings(value: Any) -> list[str]:
    """Choices as a list of strings: parquet rows arrive as lists, numpy arrays or tuples."""
    if value is None or isinstance(value, str | bytes | Mapping):
        return []
    try:
        return [str(item) for item in value]
    except TypeError:
        return []


def _brace_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "}":
            depth -= 1
    return deepest


class _Grader:
    """Grades one prediction by answer type; equivalence checks go to the grader process pool."""

    def __init__(self, timeout_s: float, processes: int):
        self._timeout_s = timeout_s
        self._processes = processes

    def is_correct(self, pred: str, gold: str, answer_type: str, choices: list[str]) -> bool:
        if answer_type == YES_NO:
            return yes_or_no(pred) == gold.lower()
        if answer_type == MULTIPLE_CHOICE:
            return self._choice_is_correct(pred, gold, choices)
        return self.equivalent(pred, gold)

    def _choice_is_correct(self, pred: str, gold: str, choices: list[str]) -> bool:
        gold_letters = frozenset(re.findall(r"[A-Z]", gold.upper()))
        named = chosen_letters(pred)
        if named is not None:
            return named == gold_letters
        if len(gold_letters) != 1:
            return False
        index = ord(next(iter(gold_letters))) - ord("A")
        return index < len(choices) and self.equivalent(pred, choices[index].strip())

    def equivalent(self, pred: str, gold: str) -> bool:
        if len(pred) > MAX_ANSWER_CHARS or _brace_depth(pred) > MAX_BRACE_DEPTH:
            return False
        if " ".join(pred.split()) == " ".join(gold.split()):
            return True
        plain_gold = _plain_text(gold)
        if _PLAIN_WORDS.fullmatch(plain_gold):
            # math-verify reads a word as a product of symbols ("yes" == "sey"); words are compared as words.
            return " ".join(_plain_text(pred).lower().split()) == " ".join(plain_gold.lower().split())
        # Neither grader reads the degree sign that MathVista and MathVerse options use; both read ^\circ.
        pred, gold = pred.replace("°", "^\\circ"), gold.replace("°", "^\\circ")
        return _grader_pool(self._processes).equivalent(pred, gold, self._timeout_s)


class _GraderProcess:
    """One ``python -m verl_tor.eval.rewards --grading-worker`` child, spoken to in JSON lines over pipes."""

    def __init__(self):
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "verl_tor.eval.rewards", _GRADING_WORKER_FLAG],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
        )
        if self._read_line(_WORKER_START_TIMEOUT_S) != _WORKER_READY:
            self.kill()
            self._stderr.seek(0)
            detail = self._stderr.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"verl_tor.eval.rewards: a grading worker failed to start:\n{detail}")

    def equivalent(self, pred: str, gold: str, timeout_s: float) -> bool | None:
        """The grader's verdict, or None when it missed the deadline or died."""
        try:
            self._process.stdin.write(json.dumps([pred, gold]) + "\n")
            self._process.stdin.flush()
        except OSError:
            return None
        line = self._read_line(timeout_s)
        return None if line is None else line == "1"

    def _read_line(self, timeout_s: float) -> str | None:
        ready, _, _ = select.select([self._process.stdout], [], [], timeout_s)
        if not ready:
            return None
        line = self._process.stdout.readline()
        return line.strip() if line else None

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()
        self._stderr.close()


class _GraderPool:
    """Up to ``size`` grader processes shared by the calling threads; a grader that misses a deadline is replaced."""

    def __init__(self, size: int):
        self.pid = os.getpid()
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[_GraderProcess] = []

    def equivalent(self, pred: str, gold: str, timeout_s: float) -> bool:
        with self._slots:
            with self._lock:
                grader = self._idle.pop() if self._idle else None
            grader = grader or _GraderProcess()
            verdict = grader.equivalent(pred, gold, timeout_s)
            if verdict is None:
                grader.kill()
                return False
            with self._lock:
                self._idle.append(grader)
            return verdict

    def close(self) -> None:
        with self._lock:
            graders, self._idle = self._idle, []
        for grader in graders:
            grader.kill()


_POOL: _GraderPool | None = None
_POOL_LOCK = threading.Lock()


def _grader_pool(size: int) -> _GraderPool:
    global _POOL
    with _POOL_LOCK:
        # A forked child must not share its parent's pipes.
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = _GraderPool(size)
        return _POOL


@atexit.register
def _close_grader_pool() -> None:
    if _POOL is not None and _POOL.pid == os.getpid():
        _POOL.close()


def _serve_grading_requests() -> None:
    """Grader main loop: one ``[prediction, ground_truth]`` JSON line in, ``1`` or ``0`` out."""
    import logging

    from math_verify import parse, verify
    from math_verify.utils import timeout
    from mathruler.grader import grade_answer

    logging.disable(logging.WARNING)  # math-verify logs every timeout; the verdict says enough
    bounded_grade_answer = timeout(_INNER_TIMEOUT_S)(grade_answer)

    def equivalent(pred: str, gold: str) -> bool:
        gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=_INNER_TIMEOUT_S)
        pred_parsed = parse(f"\\boxed{{{pred}}}", parsing_timeout=_INNER_TIMEOUT_S)
        if gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=_INNER_TIMEOUT_S):
            return True
        return bool(bounded_grade_answer(pred, gold))

    print(_WORKER_READY, flush=True)
    for line in sys.stdin:
        try:
            pred, gold = json.loads(line)
            verdict = equivalent(pred, gold)
        except Exception:  # a hostile answer must cost a wrong verdict, never the grader
            verdict = False
        print("1" if verdict else "0", flush=True)


if __name__ == "__main__" and sys.argv[1:] == [_GRADING_WORKER_FLAG]:
    _serve_grading_requests()
