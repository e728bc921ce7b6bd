"""The audit's comparisons between token selections and scores, over the valid tokens of one batch (numpy only).

- ``jaccard(A, B)`` = |A ∩ B| / |A ∪ B|; ``share(A, B)`` = |A ∩ B| / |A|, the share of A's set that B also selects
  (not symmetric); NaN when the denominator is empty.
- ``spearman(x, y)``: Pearson correlation of the ranks, ties at their average rank (Spearman's ρ with the
  usual tie correction); NaN when either side is constant.
- ``precision_recall(selected, truth)``: |S ∩ T| / |S| and |S ∩ T| / |T|.
"""

from __future__ import annotations

import math

import numpy as np


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| of two ``[N]`` bool masks."""
    return _ratio(int(np.count_nonzero(a & b)), int(np.count_nonzero(a | b)))


def share(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / |A|: how much of A's set B selects too (``[N]`` bool masks)."""
    return _ratio(int(np.count_nonzero(a & b)), int(np.count_nonzero(a)))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``[N]`` values, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and ordered[end + 1] == ordered[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two ``[N]`` score vectors (only positions finite in both count)."""
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = np.asarray(x, dtype=np.float64)[finite], np.asarray(y, dtype=np.float64)[finite]
    if len(x) < 2:
        return math.nan
    rx, ry = average_ranks(x) - (len(x) + 1) / 2, average_ranks(y) - (len(y) + 1) / 2
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denominator if denominator > 0 else math.nan


def precision_recall(selected: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(|S ∩ T| / |S|, |S ∩ T| / |T|) of two ``[N]`` bool masks."""
    hits = int(np.count_nonzero(selected & truth))
    return _ratio(hits, int(np.count_nonzero(selected))), _ratio(hits, int(np.count_nonzero(truth)))


def pairwise(labels: list[str], vectors: dict[str, np.ndarray], fn) -> list[list[float]]:
    """``fn(vectors[a], vectors[b])`` for every ordered pair of ``labels`` (row a, column b)."""
    return [[fn(vectors[a], vectors[b]) for b in labels] for a in labels]
