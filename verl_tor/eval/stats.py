"""Paired statistics for "is the difference between two arms real?": numpy only, seeded, no veRL.

A *unit* is what both arms were measured on: a benchmark item (with its k samples for avg@k), or a training seed
when a study pairs arms by seed. Every function takes the two arms' values unit by unit, in the same order.

* :func:`paired_difference` -- one set of units (one benchmark, or seeds): the mean difference B - A, a paired
  bootstrap percentile interval (units resampled with all their samples), and a two-sided p-value: exact McNemar
  when both arms are single 0/1 grades per unit (greedy decoding), else an exact or Monte-Carlo sign-flip
  (paired permutation) test on the per-unit mean difference.
* :func:`paired_difference_of_means` -- the same for the unweighted mean over several benchmarks (each benchmark's
  items resampled within it; signs flipped per item).
* :func:`mcnemar_exact_p`, :func:`sign_flip_p` -- the two tests on their own.
* :func:`seed_spread` -- the seed-to-seed standard deviation of an arm's accuracy.
* :func:`smallest_sign_flip_p`, :func:`units_for_power`, :func:`detectable_difference` -- what a number of units
  can tell apart at all: a study's seeds before and after it runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist

import numpy as np

DEFAULT_BOOTSTRAP = 10_000
DEFAULT_PERMUTATIONS = 10_000
# Sign-flip p-values are enumerated exactly up to this many non-zero units (2**16 sign patterns).
MAX_EXACT_UNITS = 16
_BOOTSTRAP_CHUNK = 256
# Statistics equal up to float rounding count as "at least as extreme".
_TIE = 1e-12


@dataclass(frozen=True)
class PairedDifference:
    """Arm B against arm A on the same units (accuracies as fractions, not percent)."""

    mean_a: float
    mean_b: float
    difference: float  # mean_b - mean_a
    low: float  # bootstrap interval of the difference
    high: float
    p_value: float  # two-sided, H0: the arms are exchangeable within each unit
    test: str  # "McNemar exact", "sign-flip exact", "sign-flip Monte Carlo (N)"
    units: int


def unit_means(values: np.ndarray | Sequence) -> np.ndarray:
    """``[U]`` per-unit means of ``[U]`` or ``[U, k]`` values (k samples per unit, e.g. avg@8's eight grades)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        return array
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"values must be [units] or [units, samples], got shape {array.shape}")
    return array.mean(axis=1)


def mcnemar_exact_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided exact McNemar p-value of paired 0/1 grades ``[U]``: the discordant pairs under H0 are
    Binomial(n_discordant, 1/2); p = min(1, 2 P(X <= min(n_01, n_10)))."""
    a_, b_ = np.asarray(a), np.asarray(b)
    if not (np.isin(a_, (0, 1)).all() and np.isin(b_, (0, 1)).all()):
        raise ValueError("McNemar's test needs 0/1 grades")
    only_b = int(((a_ == 0) & (b_ == 1)).sum())
    only_a = int(((a_ == 1) & (b_ == 0)).sum())
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    # Exact integers: 2**n stays exact for thousands of discordant items.
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def sign_flip_p(
    differences: Sequence[float],
    weights: Sequence[float] | None = None,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    exact_up_to: int = MAX_EXACT_UNITS,
) -> tuple[float, str]:
    """Two-sided paired permutation test of ``T = sum_u w_u d_u``: under H0 each unit's difference ``d_u`` is as
    likely to have the other sign. Exact over all sign patterns of the non-zero terms when there are at most
    ``exact_up_to`` of them, else Monte Carlo with ``permutations`` draws (p = (1 + hits) / (1 + draws)).
    Returns ``(p, test name)``."""
    d = np.asarray(differences, dtype=np.float64)
    w = np.full(d.shape, 1.0 / max(len(d), 1)) if weights is None else np.asarray(weights, dtype=np.float64)
    terms = (d * w)[d != 0]
    observed = abs(terms.sum())
    if len(terms) == 0:
        return 1.0, "sign-flip exact"
    if len(terms) <= exact_up_to:
        patterns = ((np.arange(2 ** len(terms))[:, None] >> np.arange(len(terms))) & 1) * 2 - 1
        statistics = np.abs(patterns @ terms)
        return float((statistics >= observed - _TIE * max(observed, 1.0)).mean()), "sign-flip exact"
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, permutations, _BOOTSTRAP_CHUNK):
        count = min(_BOOTSTRAP_CHUNK, permutations - start)
        signs = rng.integers(0, 2, size=(count, len(terms))) * 2 - 1
        hits += int((np.abs(signs @ terms) >= observed - _TIE * max(observed, 1.0)).sum())
    return (1 + hits) / (1 + permutations), f"sign-flip Monte Carlo ({permutations:,})"


def _bootstrap_interval(
    strata: Sequence[np.ndarray], bootstrap: int, seed: int, confidence: float
) -> tuple[float, float]:
    """Percentile interval of the mean over strata of each stratum's mean per-unit difference, units resampled
    with replacement within their stratum."""
    rng = np.random.default_rng(seed)
    totals = np.zeros(bootstrap)
    for differences in strata:
        for start in range(0, bootstrap, _BOOTSTRAP_CHUNK):
            count = min(_BOOTSTRAP_CHUNK, bootstrap - start)
            picks = rng.integers(0, len(differences), size=(count, len(differences)))
            totals[start : start + count] += differences[picks].mean(axis=1)
    totals /= len(strata)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(totals, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _is_single_binary(a: np.ndarray, b: np.ndarray) -> bool:
    single = all(x.ndim == 1 or x.shape[1] == 1 for x in (a, b))
    return single and np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all()


def paired_difference(
    a: np.ndarray | Sequence,
    b: np.ndarray | Sequence,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedDifference:
    """B - A over paired units. ``a``, ``b``: ``[U]`` (one value per unit: a greedy grade, a seed's accuracy) or
    ``[U, k]`` (k samples per unit; B may have another k than A). The interval resamples units with all their
    samples; the p-value is exact McNemar for single 0/1 grades, else a sign-flip test on per-unit means."""
    a_, b_ = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mean_a, mean_b = unit_means(a_), unit_means(b_)
    if len(mean_a) != len(mean_b) or len(mean_a) == 0:
        raise ValueError(f"need the same, non-zero number of units in both arms, got {len(mean_a)} and {len(mean_b)}")
    differences = mean_b - mean_a
    low, high = _bootstrap_interval([differences], bootstrap, seed, confidence)
    if _is_single_binary(a_, b_):
        p_value, test = mcnemar_exact_p(mean_a, mean_b), "McNemar exact"
    else:
        p_value, test = sign_flip_p(differences, permutations=permutations, seed=seed)
    return PairedDifference(
        float(mean_a.mean()), float(mean_b.mean()), float(differences.mean()), low, high, p_value, test, len(mean_a)
    )


def paired_difference_of_means(
    strata: Sequence[tuple[np.ndarray | Sequence, np.ndarray | Sequence]],
    bootstrap: int = DEFAULT_BOOTSTRAP,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedDifference:
    """B - A of the unweighted mean over strata (benchmarks) of each stratum's accuracy. ``strata``: ``(a, b)``
    per benchmark as in :func:`paired_difference`. Items are resampled within their benchmark; the p-value flips
    each item's sign, the item weighing ``1 / (S n_s)`` as it does in the mean."""
    means = [(unit_means(a), unit_means(b)) for a, b in strata]
    if not means or any(len(a) != len(b) or len(a) == 0 for a, b in means):
        raise ValueError("every stratum needs the same, non-zero number of units in both arms")
    differences = [b - a for a, b in means]
    low, high = _bootstrap_interval(differences, bootstrap, seed, confidence)
    weights = np.concatenate([np.full(len(d), 1.0 / (len(d) * len(differences))) for d in differences])
    p_value, test = sign_flip_p(np.concatenate(differences), weights, permutations=permutations, seed=seed)
    mean_a = float(np.mean([a.mean() for a, _ in means]))
    mean_b = float(np.mean([b.mean() for _, b in means]))
    units = sum(len(d) for d in differences)
    return PairedDifference(mean_a, mean_b, mean_b - mean_a, low, high, p_value, test, units)


def seed_spread(accuracies: Sequence[float]) -> float | None:
    """Sample standard deviation (ddof 1) of one arm's accuracy over its seeds; None with fewer than two seeds."""
    values = np.asarray(accuracies, dtype=np.float64)
    return float(values.std(ddof=1)) if len(values) >= 2 else None


def smallest_sign_flip_p(units: int) -> float:
    """The smallest two-sided p-value the exact sign-flip test can reach on ``units`` non-zero differences,
    ``2 / 2**units`` (every difference of one sign: the observed sum and its mirror are the two extreme patterns).
    Below 6 units no result reaches p < 0.05."""
    return min(1.0, 2.0 / 2**units)


def _z_sum(alpha: float, power: float) -> float:
    normal = NormalDist()
    return normal.inv_cdf(1.0 - alpha / 2) + normal.inv_cdf(power)


def units_for_power(sd: float, difference: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Paired units (seeds) needed to detect a true mean difference ``difference`` with probability ``power`` at
    two-sided level ``alpha`` when per-unit differences have standard deviation ``sd``: the normal approximation
    ``((z_{1-α/2} + z_power) sd / difference)²``, at least the units at which the sign-flip test can reach
    ``alpha`` at all (:func:`smallest_sign_flip_p`); ``inf`` for a zero difference. A planning figure, not exact
    (the t and sign-flip tests need a few units more than the normal approximation at small counts)."""
    floor = next(n for n in range(1, 64) if smallest_sign_flip_p(n) < alpha)
    if difference == 0:
        return math.inf
    return max(float(floor), (_z_sum(alpha, power) * sd / abs(difference)) ** 2)


def detectable_difference(sd: float, units: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference ``units`` paired units detect with probability ``power`` at level
    ``alpha`` (normal approximation, the inverse of :func:`units_for_power`); ``inf`` when the sign-flip test cannot
    reach ``alpha`` with that many units."""
    if smallest_sign_flip_p(units) >= alpha:
        return math.inf
    return _z_sum(alpha, power) * sd / math.sqrt(units)
