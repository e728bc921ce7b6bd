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

T_p and T_r are the tokens in ``perception``/``both`` and ``reasoning``/``both``. A method without a perception set
names its image-dependent tokens otherwise (:func:`perception_rule`, from the inspector's ``run`` header): PGPO's
soft weights by the tokens it weights above 1 (more credit than GRPO gives: its weights average 1 per response),
and a method without a perception score (GRPO, the 80/20 rule, ToR with the pass skipped) has no precision or
recall (NaN). ``perception_auc`` ranks rather than selects: the probability that an image-dependent token's
perception score S beats another valid token's (ties count half; Mann–Whitney), over the samples with an image,
whatever fraction the method then selects. A ratio with an empty denominator is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from verl_tor.demo.task import COLOUR, token_labels
from verl_tor.methods.config import TokenCreditConfig

PERCEPTION_SETS = ("perception", "both")
REASONING_SETS = ("reasoning", "both")


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


SET_RULE, UPWEIGHTED_RULE = "set", "upweighted"


def perception_rule(tor: Mapping[str, Any] | None) -> str | None:
    """How a run's perception tokens show in its records, from the resolved method of its ``run`` header:
    ``"set"`` (T_p), ``"upweighted"`` (PGPO's soft weights: w > 1) or None (no perception score computed). A header
    without the resolved components (inspector format v1, ToR only) reads as ``"set"``."""
    try:
        method = TokenCreditConfig(**tor)
    except TypeError:
        return SET_RULE
    if not method.uses_perception_score:
        return None
    return UPWEIGHTED_RULE if method.use == "pgpo_soft" else SET_RULE


def mann_whitney_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive's score > a negative's) + ½ P(tie), from average ranks; NaN if either group is empty."""
    if len(positive) == 0 or len(negative) == 0:
        return math.nan
    scores = np.concatenate([positive, negative])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Average 1-based rank of each distinct value: the ranks of its ties share their mean.
    average_rank = np.cumsum(counts) - (counts - 1) / 2
    rank_sum = average_rank[inverse[: len(positive)]].sum()
    return float((rank_sum - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative)))


def step_mechanism(samples: Iterable[Mapping[str, Any]], rule: str | None = SET_RULE) -> dict[str, float]:
    """The metrics of the module doc over the valid tokens of ``samples`` (inspector sample records), plus
    ``tokens`` (N) and ``samples`` (how many); ``rule``: :func:`perception_rule`."""
    count = {key: 0 for key in ("n", "image", "uncertain", "p", "p_image", "r", "r_uncertain", "r_image", "samples")}
    scores: dict[bool, list[float]] = {True: [], False: []}
    for sample in samples:
        count["samples"] += 1
        tokens = sample["tokens"]
        labels, uncertain = token_labels(tokens["text"])
        weights = tokens.get("w") or [math.nan] * len(labels)
        sensitivity = tokens.get("S") or [math.nan] * len(labels)
        columns = (labels, uncertain, tokens["set"], tokens["valid"], weights, sensitivity)
        for label, unsure, token_set, valid, weight, score in zip(*columns, strict=True):
            if not valid:
                continue
            image = label == COLOUR
            in_p = weight > 1 if rule == UPWEIGHTED_RULE else token_set in PERCEPTION_SETS
            in_r = token_set in REASONING_SETS
            count["n"] += 1
            count["image"] += image
            count["uncertain"] += unsure
            count["p"] += in_p
            count["p_image"] += in_p and image
            count["r"] += in_r
            count["r_uncertain"] += in_r and unsure
            count["r_image"] += in_r and image
            if rule is not None and sample.get("has_image", True) and score is not None and math.isfinite(score):
                scores[image].append(score)
    no_perception = rule is None
    return {
        "perception_precision": math.nan if no_perception else _ratio(count["p_image"], count["p"]),
        "perception_recall": math.nan if no_perception else _ratio(count["p_image"], count["image"]),
        "perception_auc": mann_whitney_auc(np.array(scores[True]), np.array(scores[False])),
        "reasoning_uncertain_share": _ratio(count["r_uncertain"], count["r"]),
        "reasoning_colour_share": _ratio(count["r_image"], count["r"]),
        "image_share": _ratio(count["image"], count["n"]),
        "uncertain_share": _ratio(count["uncertain"], count["n"]),
        "tokens": float(count["n"]),
        "samples": float(count["samples"]),
    }


def mechanism_by_step(inspect_path: str) -> dict[int, dict[str, float]]:
    """:func:`step_mechanism` of every step recorded in a ``tor_inspect.jsonl`` (the perception rule of the run
    header before it), with the step's batch size (``batch_samples``): the metrics cover the whole batch when
    ``samples`` equals it."""
    from verl_tor.inspect.reader import read_records

    runs, steps = read_records(inspect_path)
    rules = [perception_rule(run.get("tor")) for run in runs]
    return {
        record["step"]: {
            **step_mechanism(
                record["samples"], SET_RULE if record["run_index"] is None else rules[record["run_index"]]
            ),
            "batch_samples": float(record["n_samples"]),
        }
        for record in steps
    }
