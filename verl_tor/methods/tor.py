"""ToR, Token Reweighting (Lu et al., arXiv 2603.25077): two token sets per rollout batch, a constant weight each.

- Reasoning score, Eq. 5: H_t, the entropy of the next-token distribution truncated to its top-p set, p = 0.95
  (``scores.truncated_entropy``).
- Perception score, Eq. 8: S_t = |log π(o_t | I, q, o_<t) − log π(o_t | ∅, q, o_<t)|, ∅ = the prompt with its image
  removed (``scores.perception_score``, ``"abs_log_ratio"``).
- Selection, Eq. 6, 7: T_r = top α_r = 30 % of the batch's valid tokens by H, T_p = top α_p = 30 % by S
  (``selection.select_top_fraction``, scope ``batch``).
- Weights, Eq. 9: w_t = γ_r·1[t ∈ T_r] + γ_p·1[t ∈ T_p \\ T_r] + γ_o·1[t ∉ T_r ∪ T_p], γ_r = 1, γ_p = 0.5, γ_o = 0:
  a token in both sets gets γ_r. ``set_weights`` makes that overlap weight its own knob (default γ_r) so that
  "every perception token with weight 1" (γ_r = γ_o = 0, γ_p = γ_overlap = 1) is expressible.
- Use: each token's policy-gradient term is multiplied by w_t (through its advantage; KL untouched).
"""

from __future__ import annotations

import torch

PRESET = {
    "counterfactual": "remove_image",
    "perception_score": "abs_log_ratio",
    "entropy_top_p": 0.95,
    "scope": "batch",
    "reasoning_quantile": 0.3,
    "perception_quantile": 0.3,
    "use": "set_weights",
    "reasoning_weight": 1.0,
    "perception_weight": 0.5,
    "overlap_weight": None,  # = reasoning_weight (Eq. 9)
    "other_weight": 0.0,
    "trajectory_scaling": "none",
}


def set_weights(
    reasoning: torch.Tensor,
    perception: torch.Tensor,
    valid: torch.Tensor,
    reasoning_weight: float,
    perception_weight: float,
    overlap_weight: float,
    other_weight: float,
) -> torch.Tensor:
    """Eq. 9 with the overlap as its own weight: γ_r on T_r \\ T_p, γ_p on T_p \\ T_r, γ_overlap on T_r ∩ T_p, γ_o on
    the other valid tokens and 0 on invalid ones.

    Args:
        reasoning, perception, valid: `[B, T]` bool masks (the sets are subsets of the valid tokens).

    Returns:
        `[B, T]` float32 weights.
    """
    # Later fills win; invalid tokens keep 0 whatever γ_o is.
    weights = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device)
    weights.masked_fill_(valid, other_weight)
    weights.masked_fill_(perception, perception_weight)
    weights.masked_fill_(reasoning, reasoning_weight)
    weights.masked_fill_(reasoning & perception, overlap_weight)
    return weights
