"""Beyond the 80/20 rule (Wang et al., arXiv 2506.01939): policy gradient only on the high-entropy "forking" tokens.

- Score: the full entropy of each token's next-token distribution, H_t = −Σ_v p(v) log p(v) (top-p 1).
- Selection: the top ρ = 20 % of the rollout batch's valid tokens by H_t (batch scope; same ⌈ρ·N⌉, tie and
  zero-entropy rules as ToR).
- Use: a 0/1 mask, I[H_t ≥ τ_ρ^B] (weight 1 on selected tokens, 0 elsewhere) multiplying each token's term.

No image is used: the paper is text-only (Qwen3 on AIME); on a VLM it is the "entropy only" baseline.
"""

PRESET = {
    "counterfactual": None,
    "perception_score": None,
    "entropy_top_p": 1.0,
    "scope": "batch",
    "reasoning_quantile": 0.2,
    "perception_quantile": 0.0,
    "use": "set_weights",
    "reasoning_weight": 1.0,
    "perception_weight": 0.0,
    "overlap_weight": None,
    "other_weight": 0.0,
    "trajectory_scaling": "none",
}
