"""verl_tor.eval.stats against answers known independently: an exact binomial by hand, the normal-theory interval,
full enumeration of sign patterns."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from verl_tor.eval.stats import (
    mcnemar_exact_p,
    paired_difference,
    paired_difference_of_means,
    seed_spread,
    sign_flip_p,
)


def test_mcnemar_is_the_exact_two_sided_binomial():
    # 10 items: 7 right only in B, 2 right only in A, 1 right in both. Discordant n = 9, X = min(2, 7) = 2:
    # p = 2 * (C(9,0) + C(9,1) + C(9,2)) / 2**9 = 2 * 46 / 512.
    a = [0] * 7 + [1, 1] + [1]
    b = [1] * 7 + [0, 0] + [1]
    assert mcnemar_exact_p(a, b) == pytest.approx(92 / 512, rel=1e-12)
    result = paired_difference(a, b)
    assert result.test == "McNemar exact" and result.p_value == pytest.approx(92 / 512, rel=1e-12)
    assert (result.mean_a, result.mean_b, result.difference) == pytest.approx((0.3, 0.8, 0.5))
    # Balanced discordance: p is capped at 1; no discordance at all: 1.
    assert mcnemar_exact_p([1, 0], [0, 1]) == 1.0
    assert mcnemar_exact_p([1, 0, 1], [1, 0, 1]) == 1.0
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact_p([0.5], [1])


def test_mcnemar_stays_exact_for_thousands_of_discordant_items():
    # MathVision-sized: 1,500 vs 1,400 discordant items. log10 of the tail by the normal approximation as a guard.
    a = np.array([1] * 1400 + [0] * 1500)
    b = 1 - a
    p = mcnemar_exact_p(a, b)
    n, k = 2900, 1400
    z = (k + 0.5 - n / 2) / math.sqrt(n / 4)
    normal = math.erfc(-z / math.sqrt(2))  # two-sided normal approximation with continuity correction
    assert 0 < p < 0.1 and p == pytest.approx(normal, rel=0.05)


def test_bootstrap_interval_matches_the_normal_theory_interval():
    """For the mean of n = 400 paired differences the bootstrap distribution is close to normal with standard
    error sd / sqrt(n) (population sd, as the bootstrap resamples): the percentile interval lies within its
    Monte-Carlo error (≈ 0.02 SE at 20,000 draws) plus the small skew of a mean of 400 of mean ± 1.96 SE."""
    rng = np.random.default_rng(123)
    a = rng.integers(0, 2, size=(400, 8))
    b = rng.integers(0, 2, size=(400, 8)) | (rng.random((400, 8)) < 0.1)
    result = paired_difference(a, b, bootstrap=20_000, seed=7)
    differences = b.mean(1) - a.mean(1)
    se = differences.std(ddof=0) / math.sqrt(len(differences))
    assert result.difference == pytest.approx(differences.mean())
    assert result.low == pytest.approx(differences.mean() - 1.959964 * se, abs=0.08 * se)
    assert result.high == pytest.approx(differences.mean() + 1.959964 * se, abs=0.08 * se)
    # Seeded: the same numbers again; another seed moves them by Monte-Carlo error only.
    assert paired_difference(a, b, bootstrap=20_000, seed=7) == result
    assert paired_difference(a, b, bootstrap=20_000, seed=8).low != result.low
    assert result.test.startswith("sign-flip Monte Carlo")


def _enumerated_p(terms: np.ndarray) -> float:
    observed = abs(terms.sum())
    hits = sum(abs(np.dot(signs, terms)) >= observed - 1e-12 for signs in itertools.product((-1, 1), repeat=len(terms)))
    return hits / 2 ** len(terms)


def test_sign_flip_monte_carlo_against_full_enumeration():
    d = np.array([0.25, -0.125, 0.5, 0.375, 0.0, 0.125, 0.625, -0.25, 0.5, 0.125, 0.25, 0.75])
    exact = _enumerated_p(d[d != 0])
    p_exact, name = sign_flip_p(d)
    assert name == "sign-flip exact" and p_exact == pytest.approx(exact, abs=1e-12)
    # Force the Monte-Carlo path: within 4 binomial standard errors of the enumerated value.
    p_mc, name = sign_flip_p(d, permutations=40_000, seed=3, exact_up_to=0)
    assert name.startswith("sign-flip Monte Carlo")
    assert abs(p_mc - exact) < 4 * math.sqrt(exact * (1 - exact) / 40_000) + 1e-4


def test_avg_k_items_keep_their_samples_and_use_the_sign_flip_test():
    a = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    b = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]])
    result = paired_difference(a, b)
    assert result.difference == pytest.approx(np.mean([0.5, 0.25, 0.0]))
    assert result.test == "sign-flip exact" and result.p_value == pytest.approx(_enumerated_p(np.array([0.5, 0.25])))
    # Every bootstrap resample holds whole items: the interval lies in [min, max] of the item differences.
    assert 0.0 <= result.low <= result.high <= 0.5


def test_mean_over_benchmarks_weighs_each_benchmark_equally():
    big_a, big_b = np.zeros(100), np.zeros(100)  # no change on a big benchmark
    small_a, small_b = np.zeros(4), np.ones(4)  # +100 points on a small one
    result = paired_difference_of_means([(big_a, big_b), (small_a, small_b)], bootstrap=2_000)
    assert result.difference == pytest.approx(0.5) and result.units == 104
    assert result.low == result.high == pytest.approx(0.5)
    # Four non-zero terms of equal weight, all positive: 2 of 16 sign patterns are as extreme.
    assert result.p_value == pytest.approx(2 / 16) and result.test == "sign-flip exact"
    with pytest.raises(ValueError):
        paired_difference_of_means([(np.zeros(3), np.zeros(2))])


def test_seeds_as_units_and_their_spread():
    grpo = [0.571, 0.566, 0.575, 0.569]
    tor = [0.590, 0.583, 0.588, 0.579]
    result = paired_difference(grpo, tor)
    assert result.units == 4 and result.test == "sign-flip exact"
    assert result.p_value == pytest.approx(2 / 16)  # all four seeds favour B: the most extreme of 16 patterns
    assert seed_spread(grpo) == pytest.approx(np.std(grpo, ddof=1))
    assert seed_spread([0.5]) is None
