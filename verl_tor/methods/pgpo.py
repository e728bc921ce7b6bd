"""PGPO, Perception-Grounded Policy Optimization (Ye et al., "Not All Tokens See Equally", arXiv 2604.01840).

- Counterfactual: the response and later prompt tokens cannot attend to the vision tokens.
- Token visual dependency: S_t = k3 = e^Δ − Δ − 1, Δ = log π(o_t | ∅) − log π(o_t | I) (``scores``, ``"k3"``).
- Per response, I_t = min-max normalisation of log(1 + S_t) over its valid tokens, I_t ∈ [0, 1].
- Threshold-gated weights, τ = 0.4, β = 2: w_t = I_t / τ below τ (suppressed towards 0), 1 + β·(I_t − τ)/(1 − τ)
  from τ on (amplified up to 1 + β); continuous at τ (both give 1).
- Mass conservation: per response, w̃_t = w_t · L / Σ_t w_t, L = its number of valid tokens, so Σ_t w̃_t = L (the
  response's total advantage is unchanged; only its distribution over tokens moves).
- Use: each token's advantage is multiplied by w̃_t.

Degenerate responses (the choice here, the paper does not treat them): a response whose I_t are all equal
(max = min: no image, or one valid token) has no signal to reshape and gets w̃_t = 1 on every valid token.
"""

from __future__ import annotations

import torch

PRESET = {
    "counterfactual": "mask_image_attention",
    "perception_score": "k3",
    "entropy_top_p": None,
    "scope": "batch",
    "reasoning_quantile": 0.0,
    "perception_quantile": 0.0,
    "use": "pgpo_soft",
    "reasoning_weight": 0.0,
    "perception_weight": 0.0,
    "overlap_weight": None,
    "other_weight": 0.0,
    "pgpo_tau": 0.4,
    "pgpo_beta": 2.0,
    "trajectory_scaling": "none",
}


@torch.no_grad()
def pgpo_weights(score: torch.Tensor, valid: torch.Tensor, tau: float, beta: float) -> torch.Tensor:
    """PGPO's mass-conserving token weights w̃_t (module docstring), computed in float64.

    Args:
        score: `[B, T]` token visual dependency S_t ≥ 0.
        valid: `[B, T]` bool, the valid response tokens.
        tau, beta: the gate τ ∈ (0, 1) and the amplification slope β ≥ 0.

    Returns:
        `[B, T]` float32 weights; 0 on invalid tokens, each row's valid weights summing to its valid-token count.
    """
    log_score = torch.log1p(score.double().clamp(min=0.0))
    low = log_score.masked_fill(~valid, torch.inf).amin(dim=1, keepdim=True)
    high = log_score.masked_fill(~valid, -torch.inf).amax(dim=1, keepdim=True)
    spread = high - low
    signal = spread > 0  # false also for rows without valid tokens (−inf − inf)
    importance = torch.where(signal, (log_score - low) / torch.where(signal, spread, 1.0), 0.0)
    gated = torch.where(importance < tau, importance / tau, 1.0 + beta * (importance - tau) / (1.0 - tau))
    gated = torch.where(valid, gated, 0.0)
    length = valid.sum(dim=1, keepdim=True).double()
    # A row with signal has a token with I = 1, whose weight 1 + β > 0, so its sum is positive.
    renormalised = gated * length / gated.sum(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)
    return torch.where(signal, renormalised, valid.double()).float()
