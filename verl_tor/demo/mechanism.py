"""What ToR picks, against the demo task's ground truth: per step, from the token inspector's records.

The ToR arm of the demo records every sample of every step (``tor.inspect.samples_per_step`` = the rollout batch),
so each step record holds, per response token, its text, whether it was valid and its set (T_r, T_p, both,
none; :mod:`verl_tor.inspect`). :func:`verl_tor.demo.task.token_labels` says which tokens depend on the image
(the colour word) and which were genuinely uncertain (a pick with more than one right answer). Per step, over all
valid recorded tokens:

- ``perception_precision`` = |T_p ∩ image| / |T_p| and ``perception_recall`` = |T_p ∩ image| / |image|;
- ``reasoning_uncertain_share`` = |T_r ∩ uncertain| / |T_r|, and ``reasoning_colour_share`` = |T_r ∩ image| /
  |T_r| (the model is unsure what it sees: a colour word has high entropy until the colours are learned);
- the base rates ``image_share`` = |image| / N and ``uncertain_share`` = |uncertain| / N: what a selection blind
  to the scores would get on average.

T_p and T_r are the tokens in ``perception``/``both`` and ``reasoning``/``both``. A ratio with an empty
denominator is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from verl_tor.demo.task import COLOUR, token_labels

METRICS = (
    "perception_precision",
    "perception_recall",
    "reasoning_uncertain_share",
    "reasoning_colour_share",
    "image_share",
    "uncertain_share",
)
PERCEPTION_SETS = ("perception", "both")
REASONING_SETS = ("reasoning", "both")


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def step_mechanism(samples: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The metrics of the module doc over the valid tokens of ``samples`` (inspector sample records), plus
    ``tokens`` (N) and ``samples`` (how many)."""
    count = {key: 0 for key in ("n", "image", "uncertain", "p", "p_image", "r", "r_uncertain", "r_image", "samples")}
    for sample in samples:
        count["samples"] += 1
        tokens = sample["tokens"]
        labels, uncertain = token_labels(tokens["text"])
        for label, unsure, token_set, valid in zip(labels, uncertain, tokens["set"], tokens["valid"], strict=True):
            if not valid:
                continue
            image = label == COLOUR
            in_p, in_r = token_set in PERCEPTION_SETS, token_set in REASONING_SETS
            count["n"] += 1
            count["image"] += image
            count["uncertain"] += unsure
            count["p"] += in_p
            count["p_image"] += in_p and image
            count["r"] += in_r
            count["r_uncertain"] += in_r and unsure
            count["r_image"] += in_r and image
    return {
        "perception_precision": _ratio(count["p_image"], count["p"]),
        "perception_recall": _ratio(count["p_image"], count["image"]),
        "reasoning_uncertain_share": _ratio(count["r_uncertain"], count["r"]),
        "reasoning_colour_share": _ratio(count["r_image"], count["r"]),
        "image_share": _ratio(count["image"], count["n"]),
        "uncertain_share": _ratio(count["uncertain"], count["n"]),
        "tokens": float(count["n"]),
        "samples": float(count["samples"]),
    }


def mechanism_by_step(inspect_path: str) -> dict[int, dict[str, float]]:
    """:func:`step_mechanism` of every step recorded in a ``tor_inspect.jsonl``, with the step's batch size
    (``batch_samples``): the metrics cover the whole batch when ``samples`` equals it."""
    from verl_tor.inspect.reader import read_records

    _, steps = read_records(inspect_path)
    return {
        record["step"]: {**step_mechanism(record["samples"]), "batch_samples": float(record["n_samples"])}
        for record in steps
    }
