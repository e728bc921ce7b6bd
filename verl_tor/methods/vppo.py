"""VPPO, Visually-Perceptive Policy Optimization (Huang et al., "Spotlight on Token Perception for Multimodal
Reinforcement Learning", arXiv 2510.09285).

- Counterfactual: the image with 14 × 14-pixel patches blackened independently with p = 0.5.
- Token perception (visual dependency): S_t = k3 = e^Δ − Δ − 1, Δ = log π(o_t | ∅) − log π(o_t | I)
  (``scores.perception_score``, ``"k3"``).
- Token-level gradient filtering: per response, the top k = 40 % of its valid tokens by S_t (scope ``response``)
  keep weight 1, the others 0.
- Trajectory-level advantage shaping: each response's advantage is scaled by its mean visual dependency
  S̄_i = mean_t S_t, min-max normalised over the batch, n_i = (S̄_i − min) / (max − min) ∈ [0, 1], and mapped into
  [β_min, β_max] with β_min = 0.9 and the dynamic maximum β_max = β_min + (1 − β_min) / mean_i(n_i):
  α_i = β_min + n_i·(β_max − β_min). The dynamic maximum makes mean_i(α_i) = 1 exactly: the shaping moves advantage
  between responses without changing its total.

Where the paper's public code (a reference, not copied) and this module differ: it normalises over the update's
mini-batch and takes mean(n) per micro-batch; here both are over the rollout batch that the token selection sees, so
the factors do not depend on how veRL splits the update. A response without an image has no visual dependency: its
factor is 1 and it takes no part in min, max and mean (VPPO's data always have an image). With fewer than two
image responses, or max − min ≤ 1e-6 (the public code's guard), every factor is 1. Token filtering follows the
shared selection rules (``selection``): a token with S_t = 0 is never selected, where the public code fills the 40 %
with such tokens in position order; so a response without an image (every S_t = 0) trains no token, as the formula
reads literally (the public code would train its first 40 % of tokens).
"""

from __future__ import annotations

import torch

PRESET = {
    "counterfactual": "black_patches",
    "perception_score": "k3",
    "entropy_top_p": None,
    "scope": "response",
    "reasoning_quantile": 0.0,
    "perception_quantile": 0.4,
    "use": "set_weights",
    "reasoning_weight": 0.0,
    "perception_weight": 1.0,
    "overlap_weight": None,
    "other_weight": 0.0,
    "trajectory_scaling": "vppo",
    "vppo_min_scale": 0.9,
}

MIN_RANGE = 1e-6
"""max − min of the mean dependencies below which every factor is 1 (VPPO's code uses the same guard)."""


@torch.no_grad()
def trajectory_scale(
    score: torch.Tensor, valid: torch.Tensor, has_image: torch.Tensor, min_scale: float
) -> torch.Tensor:
    """VPPO's per-response advantage factor α_i (module docstring).

    Args:
        score: `[B, T]` token perception S_t.
        valid: `[B, T]` bool, the valid response tokens (padding rows all false).
        has_image: `[B]` bool, which responses had an image.
        min_scale: β_min.

    Returns:
        `[B]` float32 factors; 1 for responses without an image or without valid tokens.
    """
    counts = valid.sum(dim=1)
    included = has_image & (counts > 0)
    factors = torch.ones(valid.shape[0], dtype=torch.float64, device=valid.device)
    if int(included.sum()) < 2:
        return factors.float()
    mean_score = torch.where(valid, score.double(), 0.0).sum(dim=1) / counts.clamp(min=1)
    low, high = mean_score[included].min(), mean_score[included].max()
    if float(high - low) <= MIN_RANGE:
        return factors.float()
    normalised = (mean_score[included] - low) / (high - low)
    max_scale = min_scale + (1.0 - min_scale) / normalised.mean()
    factors[included] = min_scale + normalised * (max_scale - min_scale)
    return factors.float()
