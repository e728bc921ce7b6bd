"""The demo's task: see a colour, look its number up in a table, pick another number of the table.

Every prompt shows one solid-colour 56 x 56 picture (4 visual tokens) of one of :data:`TASK_COLOURS`, jittered per
7-pixel block, after the same text: a fixed table that maps each colour to a number, and the instruction. A right
response is three words, e.g. ``green 2 4``:

1. the colour of the picture — a **perception** token: only the image tells which colour is right;
2. the colour's number in the table — a **reasoning** token that follows from the prompt and the earlier token;
3. any other number of the table — a **reasoning** token with a genuine choice: whatever the number, there are
   ``len(TABLE) - 1`` right picks, so it is *genuinely uncertain* (≥ 2 right continuations). No pick is right after
   every number, so a policy cannot make the choice safe by always naming the same number (with the rule "a number
   at least as big" the largest number always was right: in a GRPO+ToR run the picks' truncated entropy fell from
   0.87 to 0.04 within 10 steps, 87 % of them the largest number).

The reward (:func:`compute_score`) is 1 iff the response is exactly these three words, right. Because the task is
built this way, which response token depends on the image is known: :func:`token_labels` labels each token from
its text, which is the ground truth the demo scores ToR's token sets against.

Tokens are those of the demo's tiny vocabulary (:data:`TASK_WORDS`): each colour and each number (with or without
a leading space) is one token, so a right response is 4 tokens with ``<|im_end|>``.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from verl_tor.testing.synthetic_data import colour_image_png

DATA_SOURCE = "verl_tor/colour_table"
# Four well-separated colours of the synthetic palette. With all six (orange and purple lie between them in RGB),
# GRPO's held-out accuracy stalled at 0.39-0.44 for 30-50 steps in 4 of 6 tuning runs (README, "The CPU demo").
TASK_COLOURS = ("red", "green", "blue", "yellow")
# Fixed, so the warm start can teach the lookup on random colour labels; it is in every prompt too.
TABLE: dict[str, int] = {colour: number for number, colour in enumerate(TASK_COLOURS, start=1)}
INSTRUCTION = "Say the colour of the picture, its number, then another number from the table."
PROMPT_TEXT = ", ".join(f"{colour} {number}" for colour, number in TABLE.items()) + ". " + INSTRUCTION
# The same text in every prompt, then the picture (the only part that differs).
CONTENT = PROMPT_TEXT + "<image>"
PICTURE_SIZE = 56
# One jitter value per 7 x 7 block (4 per 14-pixel patch): every picture differs, and the token inspector's
# thumbnails stay ~450 bytes (per-pixel noise would not compress: ~7 KB each, for every recorded sample).
JITTER_BLOCK = 7
# All the text the model ever reads: the tiny model's chat template (system prompt, roles) and the prompt.
TASK_TEXT = f"system\nYou are a helpful assistant.\nuser\nassistant\n{PROMPT_TEXT}"
NUMBER_WORDS = [str(number) for number in TABLE.values()]
# Single tokens: the answer words, and every word of the prompt (a prompt of ~70 tokens instead of ~190).
TASK_WORDS = list(dict.fromkeys([*TABLE, *NUMBER_WORDS, *sorted(set(re.findall(r"[A-Za-z]+", TASK_TEXT)))]))

# Token labels (ground truth by construction).
COLOUR, NUMBER, PICK, OTHER = "colour", "number", "pick", "other"


def picks(number: int) -> list[int]:
    """The right third words after ``number``: the table's other numbers."""
    return sorted(n for n in TABLE.values() if n != number)


def _number(word: str) -> int | None:
    """The table number ``word`` spells, or None."""
    return int(word) if word in NUMBER_WORDS else None


def make_rows(n: int, split: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``n`` rows of veRL's RL schema, colours drawn uniformly; ``reward_model.ground_truth`` is the colour."""
    names = list(TABLE)
    rows = []
    for index in range(n):
        colour = names[int(rng.integers(len(names)))]
        rows.append(
            {
                "data_source": DATA_SOURCE,
                "prompt": [{"role": "user", "content": CONTENT}],
                "images": [{"bytes": colour_image_png(colour, rng, size=PICTURE_SIZE, block=JITTER_BLOCK)}],
                "ability": "perception+reasoning",
                "reward_model": {"style": "rule", "ground_truth": colour},
                "extra_info": {"split": split, "index": index, "colour": colour, "number": TABLE[colour]},
            }
        )
    return rows


def write_dataset(out_dir: str, train: int, val: int, seed: int = 0) -> tuple[str, str]:
    """Write ``train.parquet`` and ``val.parquet`` (disjoint draws of one generator) to ``out_dir``."""
    import pandas as pd

    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for split, count in (("train", train), ("val", val)):
        path = os.path.join(out_dir, f"{split}.parquet")
        pd.DataFrame(make_rows(count, split, rng)).to_parquet(path)
        paths.append(path)
    return paths[0], paths[1]


def answer_parts(text: str, colour: str) -> dict[str, float]:
    """Which parts of response ``text`` are right for a picture of ``colour`` (1.0 or 0.0 each).

    ``colour``: the first word is the picture's colour; ``number``: the second is the table number of the colour
    the response named; ``pick``: the third is a table number other than the second; ``format``: exactly
    three words. Each part is judged on the response's own earlier words, so a wrong colour does not also make the
    lookup wrong.
    """
    words = text.split()
    said = words[0] if words else ""
    number = _number(words[1]) if len(words) > 1 else None
    third = _number(words[2]) if len(words) > 2 else None
    return {
        "colour": float(said == colour),
        "number": float(said in TABLE and number == TABLE[said]),
        "pick": float(number is not None and third in picks(number)),
        "format": float(len(words) == 3),
    }


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **kwargs: Any
) -> dict[str, float]:
    """veRL custom reward: ``score`` = ``acc`` = 1 iff all parts of :func:`answer_parts` are right.

    The parts are returned too, so veRL's validation logs the held-out accuracy of each
    (``val-aux/<source>/colour/mean@1``, ...).
    """
    parts = answer_parts(solution_str, ground_truth)
    score = float(all(value == 1.0 for value in parts.values()))
    return {"score": score, "acc": score, **parts}


def token_labels(texts: list[str]) -> tuple[list[str], list[bool]]:
    """Ground truth per response token (decoded token ``texts``, in order): its label and whether it was
    genuinely uncertain.

    The first colour word is :data:`COLOUR` (image-dependent); the first number after it :data:`NUMBER` (follows
    from the table and that word); the next number :data:`PICK` (follows from the rule and the number), genuinely
    uncertain when more than one pick is right; every other token (``<|im_end|>``, stray words) :data:`OTHER`.
    No token but a pick is genuinely uncertain: the image decides the colour, the table the number.
    """
    labels, uncertain = [], []
    expected, number = COLOUR, None
    for text in texts:
        word = text.strip()
        label = OTHER
        if expected == COLOUR and word in TABLE:
            label, expected = COLOUR, NUMBER
        elif expected == NUMBER and _number(word) is not None:
            label, expected, number = NUMBER, PICK, _number(word)
        elif expected == PICK and _number(word) is not None:
            label, expected = PICK, None
        labels.append(label)
        uncertain.append(label == PICK and len(picks(number)) > 1)
    return labels, uncertain


def sft_answer(rng: np.random.Generator) -> str:
    """A right-format answer for a **random** colour: the colour's number and a pick drawn uniformly among the
    right ones (the warm start's label, independent of the picture)."""
    colour = list(TABLE)[int(rng.integers(len(TABLE)))]
    options = picks(TABLE[colour])
    return f"{colour} {TABLE[colour]} {options[int(rng.integers(len(options)))]}"
