"""Per-token scores shared by the methods, in pure torch: how uncertain a token is (the reasoning score) and how much
it depends on the image (the perception score).

- Reasoning score: the entropy of the next-token distribution truncated to its top-p set (ToR's Eq. 5, p = 0.95);
  p = 1 is the plain full entropy (the 80/20 paper, arXiv 2506.01939).
- Perception score, from the two log-probabilities of the sampled token o_t with the image I and with the
  counterfactual input ∅ (image removed, patches blackened, ...), Δ_t = log π(o_t | ∅) − log π(o_t | I):
  ``abs_log_ratio`` |Δ_t| (ToR's Eq. 8) or ``k3`` exp(Δ_t) − Δ_t − 1 (the k3 estimator of KL(π(·|I) ‖ π(·|∅)) from
  the sampled token; VPPO, arXiv 2510.09285, and PGPO, arXiv 2604.01840).
"""

from __future__ import annotations

import torch

PERCEPTION_SCORES = ("abs_log_ratio", "k3")
"""Names accepted by ``perception_score``."""

K3_LOG_RATIO_BOUND = 20.0
K3_MAX = 10.0
"""k3 clamps Δ to [−20, 20] and the score to ≤ 10, as veRL's ``low_var_kl`` and VPPO's public code do: e^Δ of an
unclamped Δ overflows float32 above 88, and a non-finite score would never be selected."""

_FAST_PATH_TOP_K = 64
"""Tokens per row looked at first by `truncated_entropy`: enough for the top-p set of a peaked LM distribution."""
_FALLBACK_BUCKETS = 4096
_FALLBACK_RANGE_NATS = 32.0
"""The fallback's buckets split the 32 nats below a row's largest logit; the last bucket also takes everything
lower (their total mass is below V·e^-32, about 2e-9 at V = 151,936)."""
_ENTROPY_ROUNDING_ULPS = 16
"""A top-p entropy within this many float64 ulps of its two terms' magnitude is rounding of a point mass, not an
entropy: it is reported as exactly 0 (never selected), like the entropy of a one-token set."""


@torch.no_grad()
def perception_score(log_probs: torch.Tensor, counterfactual_log_probs: torch.Tensor, kind: str) -> torch.Tensor:
    """The perception score of each sampled token from its log-probability with and without the image.

    Args:
        log_probs: ``[...]`` log π(o_t | I), the old policy's log-probs of the sampled tokens.
        counterfactual_log_probs: ``[...]`` log π(o_t | ∅) of the same tokens under the counterfactual input.
        kind: ``"abs_log_ratio"`` (|Δ|) or ``"k3"`` (e^Δ − Δ − 1, Δ clamped to ±20, score to ≤ 10).

    Returns:
        ``[...]`` float32 scores, ≥ 0; exactly 0 where the two log-probs are equal (e.g. a sample without an image).
    """
    if log_probs.shape != counterfactual_log_probs.shape:
        raise ValueError(
            f"log_probs and counterfactual_log_probs must have the same shape, got {tuple(log_probs.shape)} and "
            f"{tuple(counterfactual_log_probs.shape)}"
        )
    # Δ in float32 as the trainer has always formed it: |Δ| of ToR is bit for bit the former |log π − log π_∅|.
    delta = counterfactual_log_probs.detach().float() - log_probs.detach().float()
    if kind == "abs_log_ratio":
        return delta.abs()
    if kind == "k3":
        delta = delta.double().clamp(-K3_LOG_RATIO_BOUND, K3_LOG_RATIO_BOUND)
        # expm1 keeps e^Δ − 1 − Δ accurate for small |Δ| (where it is ~Δ²/2); it is ≥ 0 in exact arithmetic.
        return (torch.expm1(delta) - delta).clamp(0.0, K3_MAX).float()
    raise ValueError(f"perception score must be one of {PERCEPTION_SCORES}, got {kind!r}")


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
