"""ToR token weights in pure torch (no veRL import): scores, batch-level selection and per-token weights.

Notation follows ToR (Lu et al., arXiv 2603.25077):

- reasoning score, Eq. 5: H_t, the entropy of the next-token distribution truncated to its top-p set;
- perception score, Eq. 8: S_t = |log π(o_t | I, q, o_<t) − log π(o_t | ∅, q, o_<t)| (computed elsewhere);
- selection, Eq. 6, 7, 9: T_r = top α_r of the batch's valid tokens by H, T_p = top α_p by S;
- weights: w_t = γ_r·1[t ∈ T_r] + γ_p·1[t ∈ T_p \\ T_r] + γ_o·1[t ∉ T_r ∪ T_p].
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

VALID_COUNTERFACTUALS = ("remove_image", "mask_image_attention", "black_patches", "mask_patches", "gaussian_noise")
"""Names accepted by `ToRConfig.counterfactual` (the ∅ of Eq. 8)."""

_FAST_PATH_TOP_K = 64
"""Tokens per row looked at first by `truncated_entropy`: enough for the top-p set of a peaked LM distribution."""
_FALLBACK_BUCKETS = 4096
_FALLBACK_RANGE_NATS = 32.0
"""The fallback's buckets split the 32 nats below a row's largest logit; the last bucket also takes everything
lower (their total mass is below V·e^-32, about 2e-9 at V = 151,936)."""
_ENTROPY_ROUNDING_ULPS = 16
"""A top-p entropy within this many float64 ulps of its two terms' magnitude is rounding of a point mass, not an
entropy: it is reported as exactly 0 (never selected), like the entropy of a one-token set."""


@dataclass
class ToRConfig:
    """ToR hyperparameters, set from the Hydra `tor:` section (defaults: the paper's).

    Parameters:
        reasoning_quantile (`float`, defaults to 0.3): α_r, the fraction of the rollout batch's valid response
            tokens selected as reasoning tokens T_r by truncated entropy (Eq. 6). In (0, 1].
        perception_quantile (`float`, defaults to 0.3): α_p, the fraction selected as perception tokens T_p by
            visual sensitivity (Eq. 7). In (0, 1].
        reasoning_weight (`float`, defaults to 1.0): γ_r, the weight of tokens in T_r (also of tokens in both sets).
        perception_weight (`float`, defaults to 0.5): γ_p, the weight of tokens in T_p \\ T_r.
        other_weight (`float`, defaults to 0.0): γ_o, the weight of valid tokens in neither set (the paper: 0).
        entropy_top_p (`float`, defaults to 0.95): p of Eq. 5, the top-p set the reasoning entropy is truncated to.
            1.0 gives the plain full-vocabulary entropy. In (0, 1].
        counterfactual (`str`, defaults to "remove_image"): ∅ of Eq. 8, how the image-free input is built.
            "remove_image" deletes the image's vision tokens from the prompt. One of `VALID_COUNTERFACTUALS`.
    """

    reasoning_quantile: float = 0.3
    perception_quantile: float = 0.3
    reasoning_weight: float = 1.0
    perception_weight: float = 0.5
    other_weight: float = 0.0
    entropy_top_p: float = 0.95
    counterfactual: str = "remove_image"

    def __post_init__(self) -> None:
        for name in ("reasoning_quantile", "perception_quantile", "entropy_top_p"):
            value = self._finite_number(name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"tor.{name} must be in (0, 1], got {value}")
        for name in ("reasoning_weight", "perception_weight", "other_weight"):
            value = self._finite_number(name)
            if value < 0.0:
                raise ValueError(f"tor.{name} must be >= 0, got {value}")
        if self.counterfactual not in VALID_COUNTERFACTUALS:
            raise ValueError(f"tor.counterfactual must be one of {VALID_COUNTERFACTUALS}, got {self.counterfactual!r}")

    def _finite_number(self, name: str) -> float:
        """Stores the field as a float (YAML gives ints for `1`) after checking it is a finite real number."""
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"tor.{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"tor.{name} must be finite, got {value}")
        setattr(self, name, float(value))
        return float(value)

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any], ignore: Iterable[str] = ()) -> ToRConfig:
        """Builds the config from a mapping such as the Hydra `tor:` DictConfig; missing keys keep their defaults.

        Keys in `ignore` (e.g. the section's `enable` switch) are skipped; any other key that is not a field raises
        `ValueError` naming it, so a typo in a YAML override cannot be silently ignored.
        """
        fields = {field.name for field in dataclasses.fields(cls)}
        ignored = set(ignore)
        unknown = sorted(str(key) for key in section.keys() if key not in fields and key not in ignored)
        if unknown:
            names = ", ".join(f"tor.{key}" for key in unknown)
            raise ValueError(f"unknown ToR option(s) {names}; valid options: {', '.join(sorted(fields))}")
        return cls(**{key: section[key] for key in section.keys() if key in fields})


def _top_count(fraction: float, n: int) -> int:
    """⌈fraction·n⌉, exactly: `fraction` is read as the decimal it prints as, so ⌈0.07·100⌉ = 7, not 8.

    In floats 0.07·100 = 7.000000000000001; `Fraction(repr(0.07))` is exactly 7/100.
    """
    return math.ceil(Fraction(repr(float(fraction))) * n)


def select_top_fraction(scores: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """Selects the ⌈fraction·N⌉ highest-scoring valid positions, N = number of valid (mask-true) positions.

    A position with a score ≤ 0 or not finite is never selected, nor is a masked one, so fewer than ⌈fraction·N⌉
    positions are selected when fewer eligible ones exist: exactly min(⌈fraction·N⌉, #eligible) are.
    Ties at the boundary go to the lowest flat (row-major) index first: earlier sample, then earlier token.

    Args:
        scores: `[...]` float scores (e.g. `[B, T]` entropies over the whole rollout batch).
        mask: `[...]`, same shape, bool or 0/1: which positions are valid.
        fraction: the fraction α of valid positions to select, in [0, 1].

    Returns:
        `[...]` bool tensor, true at the selected positions.
    """
    if scores.shape != mask.shape:
        raise ValueError(f"scores and mask must have the same shape, got {tuple(scores.shape)} and {tuple(mask.shape)}")
    valid = _as_bool(mask)
    selected, _, _ = _select_top_fraction(scores, valid, int(torch.count_nonzero(valid)), fraction)
    return selected


def _select_top_fraction(
    scores: torch.Tensor, valid: torch.Tensor, n_valid: int, fraction: float
) -> tuple[torch.Tensor, int, float]:
    """`select_top_fraction` given the bool mask and its count; also returns how many positions are selected and
    the smallest selected score (0.0 when none is)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    # Contiguous, so that flat (row-major) indices and `view(-1)` agree below.
    scores = scores.detach().contiguous()
    eligible = valid.contiguous() & (scores > 0) & (scores < math.inf)  # NaN fails both comparisons
    eligible_scores = scores.view(-1)[eligible.view(-1)]  # flat: a 1-D mask indexes faster than a 2-D one
    count = min(_top_count(fraction, n_valid), eligible_scores.numel())
    if count == 0:
        return torch.zeros_like(eligible), 0, 0.0
    # kthvalue is a linear-time selection, no sort of the batch: kth = the count-th largest eligible score.
    kth = torch.kthvalue(eligible_scores, eligible_scores.numel() - count + 1).values
    ties_needed = count - int(torch.count_nonzero(eligible_scores > kth))
    if ties_needed == int(torch.count_nonzero(eligible_scores == kth)):
        return eligible & (scores >= kth), count, float(kth)
    selected = eligible & (scores > kth)
    # nonzero() lists positions in row-major order, so the first ties are the lowest flat indices.
    tie_positions = (eligible & (scores == kth)).view(-1).nonzero().squeeze(1)
    selected.view(-1)[tie_positions[:ties_needed]] = True
    return selected, count, float(kth)


def _as_bool(mask: torch.Tensor) -> torch.Tensor:
    """A bool or 0/1 mask as bool."""
    mask = mask.detach()
    return mask if mask.dtype == torch.bool else mask != 0


@torch.no_grad()
def tor_token_weights(
    entropy: torch.Tensor, sensitivity: torch.Tensor, response_mask: torch.Tensor, cfg: ToRConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """ToR's per-token weights (Eq. 6, 7, 9) for one rollout batch, with batch-level selection.

    T_r = top α_r of all valid tokens by entropy, T_p = top α_p by sensitivity (`select_top_fraction`), then
    w = γ_r on T_r, γ_p on T_p \\ T_r, γ_o on the other valid tokens and 0 on invalid ones. The weights are
    constants: computed without gradient from detached scores.

    Args:
        entropy: `[B, T]` reasoning scores H_t (truncated entropy, Eq. 5).
        sensitivity: `[B, T]` perception scores S_t (visual sensitivity, Eq. 8).
        response_mask: `[B, T]` bool or 0/1: the valid response tokens (padding rows may be all false).
        cfg: the ToR hyperparameters.

    Returns:
        weights: `[B, T]` float32 on the scores' device.
        metrics: python floats, keys without a "tor/" prefix. Fractions are of the N valid tokens (0 if N = 0):
            `reasoning_fraction` |T_r|/N, `perception_fraction` |T_p|/N, `overlap_fraction` |T_r ∩ T_p|/N;
            `reasoning_threshold` / `perception_threshold`: the smallest selected score (0 if none selected);
            `mean_weight`: mean w over valid tokens; `mean_sensitivity`: mean S over valid tokens with finite S;
            `nonfinite_fraction`: fraction of valid tokens whose entropy or sensitivity is not finite (never selected).
    """
    if not entropy.shape == sensitivity.shape == response_mask.shape:
        raise ValueError(
            "entropy, sensitivity and response_mask must have the same shape, got "
            f"{tuple(entropy.shape)}, {tuple(sensitivity.shape)} and {tuple(response_mask.shape)}"
        )
    valid = _as_bool(response_mask)
    n_valid = int(torch.count_nonzero(valid))
    reasoning, n_reasoning, reasoning_threshold = _select_top_fraction(entropy, valid, n_valid, cfg.reasoning_quantile)
    perception, n_perception, perception_threshold = _select_top_fraction(
        sensitivity, valid, n_valid, cfg.perception_quantile
    )

    # Eq. 9, later fills win: tokens in both sets get the reasoning weight; invalid tokens keep 0 whatever γ_o is.
    weights = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device)
    weights.masked_fill_(valid, cfg.other_weight)
    weights.masked_fill_(perception, cfg.perception_weight)
    weights.masked_fill_(reasoning, cfg.reasoning_weight)

    # |x| < inf is false for ±inf and NaN alike.
    finite_sensitivity = valid & (sensitivity.detach().abs() < math.inf)
    nonfinite = valid & ~(finite_sensitivity & (entropy.detach().abs() < math.inf))
    # One device-to-host copy for the remaining sums, not one sync per value.
    n_both, n_finite_sensitivity, n_nonfinite, sensitivity_sum = torch.stack(
        [
            torch.count_nonzero(reasoning & perception).double(),
            torch.count_nonzero(finite_sensitivity).double(),
            torch.count_nonzero(nonfinite).double(),
            torch.where(finite_sensitivity, sensitivity.detach(), 0).sum().double(),
        ]
    ).tolist()
    n_other = n_valid - (n_reasoning + n_perception - n_both)
    total_weight = (
        cfg.reasoning_weight * n_reasoning
        + cfg.perception_weight * (n_perception - n_both)
        + cfg.other_weight * n_other
    )
    per_valid = 1.0 / max(n_valid, 1)  # every count is 0 when there are no valid tokens
    metrics = {
        "reasoning_fraction": n_reasoning * per_valid,
        "perception_fraction": n_perception * per_valid,
        "overlap_fraction": n_both * per_valid,
        "reasoning_threshold": reasoning_threshold,
        "perception_threshold": perception_threshold,
        "mean_weight": total_weight * per_valid,
        "mean_sensitivity": sensitivity_sum / max(n_finite_sensitivity, 1.0),
        "nonfinite_fraction": n_nonfinite * per_valid,
    }
    return weights, metrics


@torch.no_grad()
def truncated_entropy(logits: torch.Tensor, top_p: float, chunk_size: int = 256) -> torch.Tensor:
    """Entropy of the renormalized top-p set of each next-token distribution (Eq. 5), in nats.

        The top-p set is the one nucleus sampling draws from (HF `TopPLogitsWarper`, vLLM): tokens sorted by
        probability, a token is in the set iff the total probability of the tokens ranked before it is < top_p.
        So it is the smallest prefix whose mass reaches top_p, the token that crosses top_p included; the top token is
        always in. H = −Σ_{v ∈ set} p̃(v) log p̃(v) with p̃ = p / p(set). `top_p = 1.0` is the plain full entropy.
    A one-token set (its token holds ≥ top_p of the mass) gives exactly 0.0, never a rounding residue such as 1e-17,
    so that such a token is never selected as a reasoning token.

        A score, not a loss term: computed without gradient. Rows are processed `chunk_size` at a time in float32 (any
        input dtype, e.g. bf16); the extra memory peaks at about 6x one float32 chunk (~0.9 GB for the default 256 rows
        at V = 151,936), whatever the number of rows. No row is fully sorted: the top-p set is read off the top-64
        logits when they hold top_p of the mass (peaked rows), otherwise off a 4096-bucket histogram of the row
        followed by a top-k inside the bucket where the set ends.

        Args:
            logits: `[..., V]` next-token logits (already divided by the sampling temperature, if any).
            top_p: the nucleus mass p, in (0, 1].
            chunk_size: rows per chunk.

        Returns:
            `[...]` float32 entropies.
    """
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    rows = logits.detach().reshape(-1, logits.shape[-1])
    entropy = torch.empty(rows.shape[0], dtype=torch.float32, device=logits.device)
    for start in range(0, rows.shape[0], chunk_size):
        chunk = rows[start : start + chunk_size].float()
        entropy[start : start + chunk_size] = _full_entropy(chunk) if top_p == 1.0 else _top_p_entropy(chunk, top_p)
    return entropy.reshape(logits.shape[:-1])


def _full_entropy(logits: torch.Tensor) -> torch.Tensor:
    """`[n, V]` → `[n]`: H = log s − Σ x log x / s with x = e^(z−max), s = Σ x.

    Equal to veRL's `logsumexp(z) − Σ softmax(z)·z`, but both terms are sums of same-sign values, so there is no
    cancellation (veRL's float32 form is off by ~1e-4 on spread rows at V = 151,936).
    """
    shifted = _clamp_log_zero(logits - logits.amax(dim=-1, keepdim=True))
    unnormalized = shifted.exp()
    normalizer = unnormalized.sum(dim=-1, dtype=torch.float64)
    return normalizer.log() - (unnormalized * shifted).sum(dim=-1, dtype=torch.float64) / normalizer


def _clamp_log_zero(shifted: torch.Tensor) -> torch.Tensor:
    """Clamps shifted logits z − max (in place) to ≥ −10⁴: e^−10⁴ is 0 in float32 like e^−∞, but x·log x becomes
    0·(−10⁴) = 0 instead of 0·(−∞) = NaN for −inf logits (masked vocabulary)."""
    return shifted.clamp_(min=-1e4)


def _top_p_entropy(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """`[n, V]` float32 → `[n]`: top-p entropy, from the top-k logits where they suffice, else by histogram."""
    top_logits = torch.topk(logits, min(_FAST_PATH_TOP_K, logits.shape[-1]), dim=-1).values
    max_logit = top_logits[:, :1]
    # log p = (z − max) − log s with s = Σ e^(z−max): keeping the max apart keeps log p accurate to ~1e-7 (log s is
    # small), where logsumexp's float32 rounding (~2e-6 at 20) would shift the cumulative masses compared with
    # top_p enough to move the set's boundary by a token now and then.
    unnormalized = (logits - max_logit).exp_()
    # Summed in float64: a float32 sum over 151,936 terms is off by ~1e-7 relative, enough to move the boundary.
    log_normalizer = unnormalized.sum(dim=-1, keepdim=True, dtype=torch.float64).log()
    top_log_probs = (top_logits - max_logit).double() - log_normalizer
    no_mass_before = torch.zeros(logits.shape[0], dtype=torch.float64, device=logits.device)
    entropy, complete = _prefix_entropy(top_log_probs, top_p, no_mass_before, no_mass_before)
    if not bool(complete.all()):
        spread = (~complete).nonzero().squeeze(1)
        if spread.numel() < logits.shape[0]:  # indexing copies: skip it when every row needs the fallback
            logits, max_logit, unnormalized, log_normalizer = (
                tensor[spread] for tensor in (logits, max_logit, unnormalized, log_normalizer)
            )
        entropy[spread] = _bucketed_top_p_entropy(logits - max_logit, unnormalized, log_normalizer, top_p)
    return entropy.float()


def _prefix_entropy(
    sorted_log_probs: torch.Tensor, top_p: float, mass_before: torch.Tensor, plogp_before: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-p entropy from a row's next tokens in descending order, after a kept head of known mass.

    Args:
        sorted_log_probs: `[n, k]` float64 log p of the k tokens that follow the head, descending (−inf pads).
        top_p: the nucleus mass p.
        mass_before: `[n]` float64 Σ p over the head (all of which is in the top-p set).
        plogp_before: `[n]` float64 Σ p·log p over the head.

    Returns:
        entropy: `[n]` float64 entropy of the renormalized top-p set (exact where `complete`).
        complete: `[n]` bool, true where the top-p set ends within these k tokens.
    """
    probs = sorted_log_probs.exp()
    cumulative = mass_before[:, None] + probs.cumsum(dim=-1)
    mass_ranked_before = torch.cat([mass_before[:, None], cumulative[:, :-1]], dim=-1)
    in_top_p = mass_ranked_before < top_p
    mass = mass_before + (probs * in_top_p).sum(dim=-1)
    plogp = plogp_before + (torch.xlogy(probs, probs) * in_top_p).sum(dim=-1)
    # H(p̃) with p̃ = p / mass: −Σ p̃ log p̃ = log mass − Σ p log p / mass. The two terms cancel exactly only in exact
    # arithmetic: for a one-token set they leave ±1e-17 of float64 rounding, and a "positive" score would be selected.
    log_mass, mean_log_p = mass.log(), plogp / mass
    entropy = log_mass - mean_log_p
    rounding = _ENTROPY_ROUNDING_ULPS * torch.finfo(torch.float64).eps * (log_mass.abs() + mean_log_p.abs())
    one_token = (mass_before == 0) & (in_top_p.sum(dim=-1) == 1)  # the head, when there is one, holds tokens
    # + 0.0 turns −0.0 into 0.0.
    return torch.where(one_token | (entropy <= rounding), 0.0, entropy) + 0.0, cumulative[:, -1] >= top_p


def _bucketed_top_p_entropy(
    shifted: torch.Tensor, unnormalized: torch.Tensor, log_normalizer: torch.Tensor, top_p: float
) -> torch.Tensor:
    """`[n, V]` → `[n]` float64 top-p entropy of rows whose top-p set is large, without sorting them.

    Bucket b holds the logits in (max − (b+1)·width, max − b·width]. The bucket index never increases with the
    logit, so the buckets are consecutive runs of the sorted vocabulary: the cumulative bucket masses show the
    bucket where the top-p set ends, every bucket before it is wholly in the set, and only that bucket's tokens
    need ordering (a top-k over the tokens not in earlier buckets, k = the bucket's size).

    Args:
        shifted: `[n, V]` float32 z − max, so log p = shifted − log_normalizer (overwritten).
        unnormalized: `[n, V]` float32 x = e^shifted.
        log_normalizer: `[n, 1]` float64 log s, s = Σ x.
        top_p: the nucleus mass p.
    """
    shifted = _clamp_log_zero(shifted)
    bucket = shifted.mul(-_FALLBACK_BUCKETS / _FALLBACK_RANGE_NATS).clamp_(max=_FALLBACK_BUCKETS - 1).long()
    # Buckets sum x ∈ [0, 1] in float32; normalizing the sums afterwards in float64 keeps the masses accurate.
    zeros = torch.zeros(shifted.shape[0], _FALLBACK_BUCKETS, dtype=shifted.dtype, device=shifted.device)
    bucket_unnormalized = zeros.scatter_add(1, bucket, unnormalized).double()
    bucket_x_log_x = zeros.scatter_add(1, bucket, unnormalized * shifted).double()
    bucket_size = zeros.scatter_add(1, bucket, torch.ones_like(zeros[:1, :1]).expand(bucket.shape))
    normalizer = log_normalizer.exp()
    bucket_mass = bucket_unnormalized / normalizer
    # Σ p log p with p = x / s: (Σ x log x − log s · Σ x) / s.
    bucket_plogp = (bucket_x_log_x - log_normalizer * bucket_unnormalized) / normalizer

    # The set ends in the first bucket whose cumulative mass reaches top_p (the last one if rounding keeps all).
    mass_through = bucket_mass.cumsum(dim=-1)
    boundary = (mass_through < top_p).sum(dim=-1, keepdim=True).clamp_(max=_FALLBACK_BUCKETS - 1)
    mass_before = (mass_through - bucket_mass).gather(1, boundary).squeeze(1)
    plogp_before = (bucket_plogp.cumsum(dim=-1) - bucket_plogp).gather(1, boundary).squeeze(1)

    # Past the earlier buckets, the largest tokens are the boundary bucket's, in order; where a row's bucket is
    # smaller than k, the next buckets' tokens follow and `_prefix_entropy` leaves them out (the set has ended).
    boundary_size = int(bucket_size.gather(1, boundary).max())
    remaining = shifted.masked_fill_(bucket < boundary, float("-inf"))
    sorted_boundary = torch.topk(remaining, boundary_size, dim=-1).values
    entropy, _ = _prefix_entropy(sorted_boundary.double() - log_normalizer, top_p, mass_before, plogp_before)
    return entropy
