"""ToR's weights (verl_tor.methods: tor, selection, scores, config) against independent float64 references (numpy
sorting, explicit orderings)."""

import math
from decimal import Decimal

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from reference_math import reference_truncated_entropy

from verl_tor.methods.config import COUNTERFACTUALS, TokenCreditConfig
from verl_tor.methods.scores import truncated_entropy
from verl_tor.methods.selection import select_top_fraction
from verl_tor.methods.weights import token_weights

QWEN_VOCAB = 151_936


def ToRConfig(**overrides) -> TokenCreditConfig:  # noqa: N802 - reads like the dataclass it builds
    """The ``tor`` preset with ``overrides``, resolved as the ``tor:`` section is."""
    return TokenCreditConfig.from_mapping({"method": "tor", **overrides})


def tor_token_weights(entropy, sensitivity, mask, cfg):
    """ToR's weights given S directly: S = |Δ| with log π = 0 and log π_∅ = S, every sample with an image."""
    credit = token_weights(
        cfg, mask, reasoning_score=entropy, log_probs=torch.zeros_like(sensitivity),
        counterfactual_log_probs=sensitivity, has_image=torch.ones(mask.shape[0], dtype=torch.bool),
    )  # fmt: skip
    return credit.weights, credit.metrics


# ---------------------------------------------------------------------------------------------------------------------
# References: plain python / numpy, float64, written differently from the module.


def reference_select(scores: torch.Tensor, mask: torch.Tensor, fraction: float) -> np.ndarray:
    """Sorts eligible positions by (−score, flat index) and keeps the first ⌈fraction·N⌉ (decimal arithmetic)."""
    flat_scores = scores.double().reshape(-1).numpy()
    flat_valid = mask.reshape(-1).numpy() != 0
    budget = math.ceil(Decimal(str(fraction)) * int(flat_valid.sum()))
    eligible = [
        i for i in range(flat_scores.size) if flat_valid[i] and np.isfinite(flat_scores[i]) and flat_scores[i] > 0
    ]
    ranked = sorted(eligible, key=lambda i: (-flat_scores[i], i))
    selected = np.zeros(flat_scores.size, dtype=bool)
    selected[ranked[:budget]] = True
    return selected.reshape(tuple(scores.shape))


def reference_weights(entropy, sensitivity, mask, cfg: TokenCreditConfig) -> np.ndarray:
    reasoning = reference_select(entropy, mask, cfg.reasoning_quantile)
    perception = reference_select(sensitivity, mask, cfg.perception_quantile)
    valid = mask.numpy() != 0
    weights = np.zeros(valid.shape)
    for index in np.ndindex(valid.shape):
        if reasoning[index] and perception[index]:
            weights[index] = cfg.overlap_weight
        elif reasoning[index]:
            weights[index] = cfg.reasoning_weight
        elif perception[index]:
            weights[index] = cfg.perception_weight
        elif valid[index]:
            weights[index] = cfg.other_weight
    return weights


def random_scores(generator: torch.Generator, shape, zero_fraction=0.3, negative_fraction=0.1) -> torch.Tensor:
    scores = torch.rand(shape, generator=generator) * 5
    draw = torch.rand(shape, generator=generator)
    scores[draw < zero_fraction] = 0.0
    scores[(draw >= zero_fraction) & (draw < zero_fraction + negative_fraction)] *= -1
    return scores


def ragged_mask(generator: torch.Generator, batch: int, length: int) -> torch.Tensor:
    lengths = torch.randint(0, length + 1, (batch,), generator=generator)
    return torch.arange(length)[None, :] < lengths[:, None]


# ---------------------------------------------------------------------------------------------------------------------
# select_top_fraction


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (8, 64), (1, 500)])
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 1.0])
def test_selection_matches_reference_on_random_scores(seed, shape, fraction):
    generator = torch.Generator().manual_seed(seed)
    scores = random_scores(generator, shape)
    mask = ragged_mask(generator, *shape)
    selected = select_top_fraction(scores, mask, fraction)
    assert selected.dtype == torch.bool and selected.shape == scores.shape
    np.testing.assert_array_equal(selected.numpy(), reference_select(scores, mask, fraction))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.7])
def test_heavy_ties_select_exact_counts_lowest_index_first(seed, fraction):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 3, (6, 40), generator=generator).float()  # values in {0, 1, 2}
    mask = ragged_mask(generator, 6, 40)
    selected = select_top_fraction(scores, mask, fraction)
    n_valid = int(mask.sum())
    n_positive = int(((scores > 0) & mask).sum())
    assert int(selected.sum()) == min(math.ceil(Decimal(str(fraction)) * n_valid), n_positive)
    np.testing.assert_array_equal(selected.numpy(), reference_select(scores, mask, fraction))


def test_ties_break_towards_earlier_samples_then_earlier_tokens():
    scores = torch.ones(3, 4)
    mask = torch.ones(3, 4, dtype=torch.bool)
    selected = select_top_fraction(scores, mask, 0.5)  # 6 of 12
    expected = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(selected, expected)


def test_higher_scores_win_over_lower_index_ties():
    scores = torch.tensor([[1.0, 1.0, 1.0, 3.0], [1.0, 2.0, 1.0, 1.0]])
    selected = select_top_fraction(scores, torch.ones_like(scores), 0.5)  # 4 of 8: 3, 2, then two 1s by index
    expected = torch.tensor([[1, 1, 0, 1], [0, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(selected, expected)


@pytest.mark.parametrize(
    "fraction, n, expected",
    [(0.07, 100, 7), (0.14, 50, 7), (0.28, 25, 7), (0.56, 25, 14), (0.3, 10, 3), (0.3, 1, 1), (0.3, 3, 1), (1.0, 7, 7)],
)
def test_budget_is_an_exact_ceiling_despite_float_rounding(fraction, n, expected):
    # In floats 0.07 * 100 == 7.000000000000001 and 0.28 * 25 == 7.000000000000001: a naive ceil gives 8.
    scores = torch.arange(n, 0, -1).float()
    selected = select_top_fraction(scores, torch.ones(n, dtype=torch.bool), fraction)
    assert int(selected.sum()) == expected


def test_all_zero_or_negative_scores_select_nothing():
    mask = torch.ones(4, 5, dtype=torch.bool)
    assert not select_top_fraction(torch.zeros(4, 5), mask, 1.0).any()
    assert not select_top_fraction(-torch.rand(4, 5), mask, 0.3).any()


def test_masked_positions_are_never_selected_even_with_huge_scores():
    scores = torch.rand(4, 10)
    mask = torch.rand(4, 10) < 0.5
    scores[~mask] = 1e30
    selected = select_top_fraction(scores, mask, 1.0)
    assert not selected[~mask].any()
    assert torch.equal(selected, mask)  # every valid score is positive, so with fraction 1 all are selected


def test_non_finite_scores_are_never_selected():
    scores = torch.tensor([[float("nan"), float("inf"), 1.0, 2.0, -float("inf"), 0.5]])
    selected = select_top_fraction(scores, torch.ones_like(scores, dtype=torch.bool), 1.0)
    assert selected.tolist() == [[False, False, True, True, False, True]]


@pytest.mark.parametrize("mask_dtype", [torch.float32, torch.int64, torch.bool])
def test_mask_may_be_bool_or_zero_one_numbers(mask_dtype):
    generator = torch.Generator().manual_seed(0)
    scores = random_scores(generator, (5, 30))
    mask = ragged_mask(generator, 5, 30)
    selected = select_top_fraction(scores, mask.to(mask_dtype), 0.3)
    np.testing.assert_array_equal(selected.numpy(), reference_select(scores, mask, 0.3))


def test_non_contiguous_scores_use_logical_row_major_order():
    scores = torch.ones(6, 3).t()  # logical [3, 6], all ties
    selected = select_top_fraction(scores, torch.ones(3, 6, dtype=torch.bool), 0.5)
    assert selected.tolist() == [[True] * 6, [True, True, True, False, False, False], [False] * 6]


def test_select_rejects_bad_arguments():
    with pytest.raises(ValueError, match="same shape"):
        select_top_fraction(torch.ones(2, 3), torch.ones(3, 2), 0.3)
    with pytest.raises(ValueError, match="fraction"):
        select_top_fraction(torch.ones(2, 3), torch.ones(2, 3), 1.5)


# ---------------------------------------------------------------------------------------------------------------------
# tor_token_weights


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(2, 9), (8, 50), (16, 128)])
@pytest.mark.parametrize(
    "cfg",
    [
        ToRConfig(),
        ToRConfig(reasoning_quantile=0.5, perception_quantile=0.2, other_weight=0.1),
        ToRConfig(reasoning_quantile=1.0, perception_quantile=1.0, reasoning_weight=2.0, perception_weight=0.25),
    ],
    ids=["paper", "other_weight", "everything"],
)
def test_weights_and_metrics_match_reference(seed, shape, cfg):
    generator = torch.Generator().manual_seed(seed)
    entropy = random_scores(generator, shape, zero_fraction=0.6, negative_fraction=0.0)
    sensitivity = random_scores(generator, shape, zero_fraction=0.2, negative_fraction=0.0)
    sensitivity[: shape[0] // 2] = 0.0  # text-only samples: no visual sensitivity at all
    mask = ragged_mask(generator, *shape)

    weights, metrics = tor_token_weights(entropy, sensitivity, mask, cfg)

    np.testing.assert_array_equal(
        weights.numpy(), reference_weights(entropy, sensitivity, mask, cfg).astype(np.float32)
    )
    reasoning = reference_select(entropy, mask, cfg.reasoning_quantile)
    perception = reference_select(sensitivity, mask, cfg.perception_quantile)
    valid = mask.numpy()
    n_valid = max(int(valid.sum()), 1)
    assert metrics["reasoning_fraction"] == pytest.approx(reasoning.sum() / n_valid)
    assert metrics["perception_fraction"] == pytest.approx(perception.sum() / n_valid)
    assert metrics["overlap_fraction"] == pytest.approx((reasoning & perception).sum() / n_valid)
    expected_reasoning_threshold = entropy.numpy()[reasoning].min() if reasoning.any() else 0.0
    assert metrics["reasoning_threshold"] == pytest.approx(expected_reasoning_threshold)
    expected_perception_threshold = sensitivity.numpy()[perception].min() if perception.any() else 0.0
    assert metrics["perception_threshold"] == pytest.approx(expected_perception_threshold)
    expected_mean_weight = reference_weights(entropy, sensitivity, mask, cfg)[valid].sum() / n_valid
    assert metrics["mean_weight"] == pytest.approx(expected_mean_weight)
    assert metrics["mean_sensitivity"] == pytest.approx(sensitivity.double().numpy()[valid].sum() / n_valid)
    assert metrics["nonfinite_fraction"] == 0
    assert all(isinstance(value, float) for value in metrics.values())
    assert not any(key.startswith("tor/") for key in metrics)


@pytest.mark.parametrize("seed", range(3))
def test_weight_properties(seed):
    generator = torch.Generator().manual_seed(seed)
    entropy = random_scores(generator, (12, 70), zero_fraction=0.5)
    sensitivity = random_scores(generator, (12, 70))
    mask = ragged_mask(generator, 12, 70)
    cfg = ToRConfig(other_weight=0.25)
    weights, metrics = tor_token_weights(entropy, sensitivity, mask, cfg)
    n_valid = int(mask.sum())
    assert not weights[~mask].any()
    assert set(weights[mask].unique().tolist()) <= {cfg.reasoning_weight, cfg.perception_weight, cfg.other_weight}
    assert metrics["reasoning_fraction"] <= cfg.reasoning_quantile + 1 / n_valid
    assert metrics["perception_fraction"] <= cfg.perception_quantile + 1 / n_valid
    assert metrics["overlap_fraction"] <= min(metrics["reasoning_fraction"], metrics["perception_fraction"])


def test_overlap_gets_reasoning_weight_and_other_weight_only_unselected_valid_tokens():
    # 10 valid tokens, α = 0.2: T_r = {0, 1} by entropy, T_p = {1, 2} by sensitivity; token 1 is in both.
    entropy = torch.tensor([[9.0, 8.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 99.0]])
    sensitivity = torch.tensor([[0.0, 7.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 99.0]])
    mask = torch.tensor([[1] * 10 + [0]])
    cfg = ToRConfig(reasoning_quantile=0.2, perception_quantile=0.2, perception_weight=0.5, other_weight=0.1)
    weights, metrics = tor_token_weights(entropy, sensitivity, mask, cfg)
    assert weights[0].tolist() == pytest.approx([1.0, 1.0, 0.5] + [0.1] * 7 + [0.0])
    assert metrics["overlap_fraction"] == pytest.approx(0.1)
    assert metrics["reasoning_threshold"] == 8.0 and metrics["perception_threshold"] == 6.0
    assert metrics["mean_weight"] == pytest.approx((1.0 + 1.0 + 0.5 + 0.7) / 10)


def test_non_finite_scores_are_never_selected_and_are_counted():
    entropy = torch.tensor([[float("nan"), float("inf"), 1.0, 2.0], [3.0, 0.0, 0.0, float("nan")]])
    sensitivity = torch.tensor([[1.0, 1.0, -float("inf"), 1.0], [1.0, 1.0, 1.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])  # the NaN at [1, 3] is padding: not counted
    cfg = ToRConfig(reasoning_quantile=1.0, perception_quantile=1.0)
    weights, metrics = tor_token_weights(entropy, sensitivity, mask, cfg)
    # [0, 0], [0, 1] (entropy) and [0, 2] (sensitivity) of the valid tokens
    assert metrics["nonfinite_fraction"] == 3.0 / int(mask.sum())
    assert metrics["reasoning_fraction"] == pytest.approx(3 / 7)
    assert metrics["perception_fraction"] == pytest.approx(6 / 7)
    assert metrics["mean_sensitivity"] == pytest.approx(1.0)
    assert weights.tolist() == [[0.5, 0.5, 1.0, 1.0], [1.0, 0.5, 0.5, 0.0]]


def test_padding_rows_contribute_nothing():
    generator = torch.Generator().manual_seed(0)
    entropy = random_scores(generator, (4, 20))
    sensitivity = random_scores(generator, (4, 20))
    mask = ragged_mask(generator, 4, 20)
    weights, metrics = tor_token_weights(entropy, sensitivity, mask, ToRConfig())

    padded = lambda tensor, fill: torch.cat([tensor[:2], torch.full((3, 20), fill), tensor[2:]])  # noqa: E731
    padded_weights, padded_metrics = tor_token_weights(
        padded(entropy, 50.0), padded(sensitivity, 50.0), padded(mask, False), ToRConfig()
    )
    assert not padded_weights[2:5].any()
    assert torch.equal(torch.cat([padded_weights[:2], padded_weights[5:]]), weights)
    assert padded_metrics == pytest.approx(metrics)


def test_no_valid_tokens_gives_zero_weights_and_metrics():
    scores = torch.rand(3, 5)
    weights, metrics = tor_token_weights(scores, scores, torch.zeros(3, 5), ToRConfig(other_weight=1.0))
    assert not weights.any()
    assert all(value == 0.0 for value in metrics.values())


def test_weights_are_constants():
    entropy = torch.rand(2, 6, requires_grad=True)
    sensitivity = torch.rand(2, 6, requires_grad=True)
    weights, _ = tor_token_weights(entropy * 1, sensitivity * 1, torch.ones(2, 6), ToRConfig())
    assert not weights.requires_grad and weights.dtype == torch.float32


def test_weights_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"must be a tensor of shape \(2, 3\)"):
        tor_token_weights(torch.rand(2, 3), torch.rand(2, 4), torch.ones(2, 3), ToRConfig())


# ---------------------------------------------------------------------------------------------------------------------
# The `tor:` section resolved for the tor preset


def test_config_defaults_are_the_papers():
    cfg = ToRConfig()
    assert (cfg.reasoning_quantile, cfg.perception_quantile) == (0.3, 0.3)
    assert (cfg.reasoning_weight, cfg.perception_weight, cfg.overlap_weight, cfg.other_weight) == (1.0, 0.5, 1.0, 0.0)
    assert cfg.entropy_top_p == 0.95 and cfg.counterfactual == "remove_image" and cfg.scope == "batch"
    assert cfg.perception_score == "abs_log_ratio" and cfg.use == "set_weights" and cfg.trajectory_scaling == "none"
    assert cfg.counterfactual in COUNTERFACTUALS


@pytest.mark.parametrize(
    "field, value",
    [
        (field, value)
        for field in ("reasoning_quantile", "perception_quantile", "entropy_top_p")
        for value in (-0.1, 1.5, float("nan"), float("inf"), "0.3", True)
    ]
    + [("entropy_top_p", 0.0)]
    + [
        (field, value)
        for field in ("reasoning_weight", "perception_weight", "overlap_weight", "other_weight")
        for value in (-0.5, float("nan"), float("inf"), -float("inf"), "1", False)
    ]
    + [("counterfactual", value) for value in ("black_image", "")]
    + [("perception_score", "kl"), ("scope", "sample"), ("use", "mask"), ("method", "ppo"), ("method", "")],
)
def test_invalid_config_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"tor\.{field}\b"):
        ToRConfig(**{field: value})


def test_config_error_message_reads_well():
    with pytest.raises(ValueError, match=r"^tor\.perception_quantile must be in \[0, 1\], got 1\.5$"):
        ToRConfig(perception_quantile=1.5)


def test_config_accepts_boundaries_and_integers():
    cfg = ToRConfig(reasoning_quantile=1, perception_quantile=1.0, entropy_top_p=1, reasoning_weight=2, other_weight=0)
    assert cfg.reasoning_quantile == 1.0 and isinstance(cfg.reasoning_quantile, float)
    assert cfg.reasoning_weight == 2.0 and isinstance(cfg.reasoning_weight, float)
    assert cfg.overlap_weight == 2.0  # Eq. 9: the overlap follows γ_r unless given


def test_config_from_hydra_section_ignores_enable_and_rejects_unknown_keys():
    section = OmegaConf.create({"enable": True, "perception_weight": 0.25, "entropy_top_p": 1.0, "scope": None})
    cfg = TokenCreditConfig.from_mapping(section, ignore=("enable",))
    assert cfg == ToRConfig(perception_weight=0.25, entropy_top_p=1.0)

    with pytest.raises(ValueError, match=r"tor\.enable"):
        TokenCreditConfig.from_mapping(section)
    typo = OmegaConf.create({"enable": True, "perception_wieght": 0.25, "bogus": 1})
    with pytest.raises(ValueError, match=r"tor\.bogus, tor\.perception_wieght"):
        TokenCreditConfig.from_mapping(typo, ignore=("enable",))
    with pytest.raises(ValueError, match=r"tor\.reasoning_quantile"):
        TokenCreditConfig.from_mapping({"reasoning_quantile": 2.0})


def test_config_from_mapping_round_trips_every_field():
    custom = ToRConfig(reasoning_quantile=0.2, perception_quantile=0.4, reasoning_weight=1.5, perception_weight=0.25,
                       overlap_weight=0.75, other_weight=0.05, entropy_top_p=0.9)  # fmt: skip
    assert TokenCreditConfig.from_mapping(custom.components()) == custom


# ---------------------------------------------------------------------------------------------------------------------
# truncated_entropy


def peaked_logits(generator: torch.Generator, rows: int, vocab: int) -> torch.Tensor:
    """LM-like rows: a Zipf-shaped head over a random permutation, exponent per row from near-greedy to spread."""
    exponents = torch.linspace(1.3, 6.0, rows)[:, None]
    ranks = torch.stack([torch.randperm(vocab, generator=generator) for _ in range(rows)]) + 1
    return -exponents * ranks.double().log() + 0.3 * torch.randn(rows, vocab, generator=generator, dtype=torch.float64)


def top_k_mass(logits: torch.Tensor, k: int) -> torch.Tensor:
    return torch.softmax(logits.double(), dim=-1).topk(k, dim=-1).values.sum(dim=-1)


@pytest.fixture(scope="module")
def qwen_logits() -> dict[str, torch.Tensor]:
    """Rows over Qwen's vocabulary: LM-like (peaked) ones and near-uniform (flat) ones."""
    generator = torch.Generator().manual_seed(1)
    return {
        "peaked": peaked_logits(generator, 6, QWEN_VOCAB).float(),
        # close to uniform: the top-p set holds ~100k tokens, far beyond the top-k fast path
        "flat": torch.randn(3, QWEN_VOCAB, generator=generator),
    }


@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.95, 0.999, 1.0])
@pytest.mark.parametrize("kind", ["peaked", "flat"])
def test_truncated_entropy_matches_brute_force_at_qwen_vocabulary(qwen_logits, top_p, kind):
    logits = qwen_logits[kind]
    result = truncated_entropy(logits, top_p)
    assert result.dtype == torch.float32 and result.shape == (logits.shape[0],)
    np.testing.assert_allclose(result.numpy(), reference_truncated_entropy(logits, top_p), rtol=1e-6, atol=1e-6)


def test_the_qwen_rows_exercise_the_fast_path_and_the_fallback(qwen_logits):
    peaked_mass = top_k_mass(qwen_logits["peaked"], 64)  # the fast path reads the top 64 logits
    assert (peaked_mass >= 0.95).any() and (peaked_mass < 0.95).any()
    assert (top_k_mass(qwen_logits["flat"], 4096) < 0.5).all()


def test_bf16_logits(qwen_logits):
    logits = torch.cat([qwen_logits["peaked"][:3], qwen_logits["flat"][:2]]).bfloat16()  # bf16: many exact ties
    for top_p in (0.9, 0.95, 1.0):
        expected = reference_truncated_entropy(logits.float(), top_p)
        np.testing.assert_allclose(truncated_entropy(logits, top_p).numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.5, 0.61, 0.8, 0.95, 0.99, 1.0])
def test_small_vocabulary_exhaustively_with_ties(top_p):
    generator = torch.Generator().manual_seed(3)
    logits = torch.cat(
        [
            torch.randn(300, 7, generator=generator) * 3,
            torch.randint(-2, 3, (300, 7), generator=generator).float(),  # integer logits: ties everywhere
            torch.zeros(1, 7),  # uniform
            torch.tensor([[0.0] + [-float("inf")] * 6]),  # one possible token
        ]
    )
    np.testing.assert_allclose(
        truncated_entropy(logits, top_p).numpy(), reference_truncated_entropy(logits, top_p), rtol=1e-6, atol=1e-6
    )


def test_top_p_set_is_the_one_nucleus_sampling_draws_from():
    from transformers.generation.logits_process import TopPLogitsWarper

    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(200, 50, generator=generator) * 2
    for top_p in (0.3, 0.8, 0.95):
        nucleus = TopPLogitsWarper(top_p=top_p)(None, logits.clone())
        kept = torch.softmax(nucleus.double(), dim=-1)
        expected = -torch.special.xlogy(kept, kept).sum(dim=-1)
        np.testing.assert_allclose(truncated_entropy(logits, top_p).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


def test_boundary_token_that_crosses_top_p_is_kept():
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    two_tokens = -(0.625 * math.log(0.625) + 0.375 * math.log(0.375))  # {0.5, 0.3} renormalized
    assert truncated_entropy(logits, 0.45).item() == 0.0  # 0.5 alone reaches 0.45
    assert truncated_entropy(logits, 0.6).item() == pytest.approx(two_tokens)  # 0.5 < 0.6: 0.3 crosses it, kept
    assert truncated_entropy(logits, 0.79).item() == pytest.approx(two_tokens)


def test_token_after_a_prefix_that_exactly_reaches_top_p_is_dropped():
    uniform_over_four = torch.tensor([[0.0, 0.0, 0.0, 0.0, -float("inf")]])  # p = 0.25 each, exactly
    assert truncated_entropy(uniform_over_four, 0.5).item() == pytest.approx(math.log(2))
    assert truncated_entropy(uniform_over_four, 0.500001).item() == pytest.approx(math.log(3))
    assert truncated_entropy(uniform_over_four, 0.25).item() == 0.0


def test_top_p_one_is_the_full_entropy_with_and_without_masked_vocabulary():
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(4, QWEN_VOCAB, generator=generator) * 4
    logits[:, -300:] = -float("inf")  # e.g. padded vocabulary entries
    probs = torch.softmax(logits.double(), dim=-1)
    full = -torch.special.xlogy(probs, probs).sum(dim=-1)
    np.testing.assert_allclose(truncated_entropy(logits, 1.0).numpy(), full.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        truncated_entropy(logits, 0.9).numpy(), reference_truncated_entropy(logits, 0.9), rtol=1e-6, atol=1e-6
    )


def test_result_is_independent_of_chunk_size_and_keeps_leading_shape():
    generator = torch.Generator().manual_seed(6)
    logits = torch.cat([peaked_logits(generator, 4, 5000).float(), torch.randn(3, 5000, generator=generator)])
    logits = logits[torch.randperm(7, generator=generator)].reshape(7, 1, 5000)
    expected = truncated_entropy(logits, 0.95, chunk_size=1024)
    assert expected.shape == (7, 1)
    for chunk_size in (1, 2, 3):
        np.testing.assert_allclose(truncated_entropy(logits, 0.95, chunk_size=chunk_size), expected, rtol=0, atol=1e-6)


def test_truncated_entropy_is_a_constant_score():
    logits = torch.randn(3, 100, requires_grad=True)
    assert not truncated_entropy(logits, 0.95).requires_grad


def test_truncated_entropy_rejects_bad_arguments():
    for top_p in (0.0, 1.01, float("nan")):
        with pytest.raises(ValueError, match="top_p"):
            truncated_entropy(torch.randn(2, 10), top_p)
    with pytest.raises(ValueError, match="chunk_size"):
        truncated_entropy(torch.randn(2, 10), 0.9, chunk_size=0)


# ---------------------------------------------------------------------------------------------------------------------
# Zero truncated entropy is exactly 0 (a one-token top-p set), so it is never selected as a reasoning score.


def confident_rows(generator: torch.Generator, top_masses: torch.Tensor, vocab: int = QWEN_VOCAB) -> torch.Tensor:
    """`[n, vocab]` float64 logits whose top token holds `top_masses[i]` of the mass, the rest spread at random."""
    rest = torch.rand(len(top_masses), vocab - 1, generator=generator, dtype=torch.float64) + 0.1
    rest = rest / rest.sum(dim=-1, keepdim=True) * (1 - top_masses[:, None])
    return torch.cat([top_masses[:, None], rest], dim=-1).log()


def spread_rows(generator: torch.Generator, n: int, vocab: int = QWEN_VOCAB) -> torch.Tensor:
    """`[n, vocab]` logits of uncertain next tokens: several candidates share most of the mass."""
    logits = torch.randn(n, vocab, generator=generator, dtype=torch.float64) - 12
    logits[:, :8] = torch.randn(n, 8, generator=generator, dtype=torch.float64)
    return logits


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_one_token_top_p_set_gives_exactly_zero(dtype):
    generator = torch.Generator().manual_seed(11)
    logits = confident_rows(generator, torch.linspace(0.951, 0.9999, 64, dtype=torch.float64)).to(dtype)
    # In the input's own precision the top token still holds more than 0.95: the set is that token alone.
    assert (torch.softmax(logits.double(), dim=-1).amax(dim=-1) > 0.95).all()
    entropy = truncated_entropy(logits, 0.95)
    assert (entropy == 0).all(), entropy[entropy != 0]
    assert not torch.signbit(entropy).any()  # 0.0, not −0.0


def test_tiny_truncated_entropies_are_zero_or_real():
    """Across the whole range from confident to spread rows, no score is a rounding residue: each is exactly 0
    where the float64 brute force keeps one token, and otherwise within 1e-6 of the brute force and above 1e-9."""
    generator = torch.Generator().manual_seed(12)
    top_masses = torch.cat([torch.linspace(0.9, 0.9999, 40), torch.linspace(0.949, 0.9515, 24)]).double()
    logits = torch.cat([confident_rows(generator, top_masses, 5000), spread_rows(generator, 8, 5000)]).float()
    entropy = truncated_entropy(logits, 0.95).numpy()
    probs = np.sort(torch.softmax(logits.double(), dim=-1).numpy(), axis=-1)[:, ::-1]
    one_token = probs[:, 0] >= 0.95
    assert one_token.any() and (~one_token).any()
    assert (entropy[one_token] == 0).all()
    assert (entropy[~one_token] > 1e-9).all()
    np.testing.assert_allclose(entropy, reference_truncated_entropy(logits, 0.95), rtol=1e-6, atol=1e-6)


def test_zero_entropy_tokens_never_fill_the_reasoning_set():
    """Only 20 % of the batch's tokens have a real top-p entropy; at α_r = 0.3 exactly those are T_r, and the
    threshold metric is a real entropy (the smallest of them), not rounding noise (before the fix, 5 of these 200
    one-token rows scored ≈ +1e-17 and took reasoning weight)."""
    generator = torch.Generator().manual_seed(13)
    n_confident, n_uncertain, vocab = 200, 50, 5000
    logits = confident_rows(generator, torch.linspace(0.951, 0.9999, n_confident).double(), vocab)
    logits = torch.cat([logits, spread_rows(generator, n_uncertain, vocab)]).float()
    uncertain = torch.arange(n_confident + n_uncertain) >= n_confident
    entropy = truncated_entropy(logits, 0.95).reshape(10, 25)
    uncertain = uncertain.reshape(10, 25)
    mask = torch.ones(10, 25, dtype=torch.bool)
    weights, metrics = tor_token_weights(entropy, torch.zeros_like(entropy), mask, ToRConfig(reasoning_quantile=0.3))
    assert torch.equal(weights == 1.0, uncertain)
    assert metrics["reasoning_fraction"] == 0.2
    assert metrics["reasoning_threshold"] == pytest.approx(entropy[uncertain].min().item())
    assert metrics["reasoning_threshold"] > 0.1


def test_the_normalizer_is_summed_in_float64_at_qwen_vocabulary():
    """A row whose top token holds 0.95 of the mass to within the error of a float32 sum over 151,936 terms: summed in
    float32, the normalizer moves the top-p boundary and the entropy comes out 0.11 instead of the reference's 0."""
    vocab, top_p = 151_936, 0.95
    generator = torch.Generator().manual_seed(0)
    tail = (torch.rand(vocab - 2, generator=generator, dtype=torch.float64) * 3.8e-7).log().float()
    tail_mass = float(tail.exp().sum(dtype=torch.float64))
    # The top token (logit 0, mass 1 before normalizing) holds top_p plus a margin of 1e-7 of the normalizer.
    second = 1.0 / top_p - 1.0 - tail_mass - 1.4e-7
    logits = torch.cat([torch.tensor([0.0, math.log(second)], dtype=torch.float32), tail])[None]
    float32_mass = float(logits.exp().sum())
    assert 1.0 / float32_mass < top_p, "precondition: a float32 sum puts the top token below top_p"
    assert reference_truncated_entropy(logits, top_p)[0] == 0.0
    assert float(truncated_entropy(logits, top_p)[0]) == 0.0
