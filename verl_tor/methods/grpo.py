"""GRPO (Shao et al., arXiv 2402.03300) as a token-credit preset: every valid token weight 1.

The baseline under identical settings: the same trainer, data, loss and rollout correction as every other preset,
with no token selection (both quantiles 0) and γ_o = 1, so each token's loss term is exactly veRL's.
"""

PRESET = {
    "counterfactual": None,
    "perception_score": None,
    "entropy_top_p": None,
    "scope": "batch",
    "reasoning_quantile": 0.0,
    "perception_quantile": 0.0,
    "use": "set_weights",
    "reasoning_weight": 1.0,
    "perception_weight": 1.0,
    "overlap_weight": None,
    "other_weight": 1.0,
    "trajectory_scaling": "none",
}
