"""From per-token scores to per-token weights, for every registered method (``TokenCreditConfig``): one function,
the components in the order the papers apply them.

1. perception score from the two log-probs (``scores.perception_score``; 0 for a response without an image);
2. selection of T_r by the reasoning score and T_p by the perception score (``selection``, scope batch/response);
3. use: constant set weights (``tor.set_weights``, Eq. 9 with the overlap weight) or PGPO's soft weights
   (``pgpo.pgpo_weights``);
4. an optional per-response factor (``vppo.trajectory_scale``).

The weights multiply each token's policy-gradient term; they are constants (no gradient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from verl_tor.methods.config import TokenCreditConfig
from verl_tor.methods.pgpo import pgpo_weights
from verl_tor.methods.scores import perception_score
from verl_tor.methods.selection import as_bool, select_with_threshold
from verl_tor.methods.tor import set_weights
from verl_tor.methods.vppo import trajectory_scale


@dataclass
class TokenCredit:
    """What a method decided for one rollout batch (``[B, T]`` tensors, ``[B]`` per response).

    Attributes:
        weights: float32 per-token weights (0 on invalid tokens), trajectory factor included.
        reasoning: bool, T_r (all false when the method has no reasoning set).
        perception: bool, T_p (all false when the method has no perception set).
        reasoning_score: float32 scores the reasoning set was selected by (zeros when unused).
        perception_score: float32 scores of the perception set / soft weights (zeros when unused or without image).
        trajectory_scale: float32 ``[B]`` per-response factor (ones without trajectory scaling).
        metrics: python floats, keys without the ``tor/`` prefix. Fractions are of the N valid tokens (0 if N = 0):
            ``reasoning_fraction`` |T_r|/N, ``perception_fraction`` |T_p|/N, ``overlap_fraction`` |T_r ∩ T_p|/N;
            ``reasoning_threshold`` / ``perception_threshold``: the smallest selected score (0 if none);
            ``mean_weight``: mean w over valid tokens; ``mean_sensitivity``: mean perception score over valid tokens
            with a finite one; ``nonfinite_fraction``: fraction of valid tokens with a used score not finite;
            ``trajectory_scale_min`` / ``_max`` with trajectory scaling, ``max_weight`` with PGPO's weights.
    """

    weights: torch.Tensor
    reasoning: torch.Tensor
    perception: torch.Tensor
    reasoning_score: torch.Tensor
    perception_score: torch.Tensor
    trajectory_scale: torch.Tensor
    metrics: dict[str, float]


@torch.no_grad()
def token_weights(
    cfg: TokenCreditConfig,
    response_mask: torch.Tensor,
    reasoning_score: torch.Tensor | None = None,
    log_probs: torch.Tensor | None = None,
    counterfactual_log_probs: torch.Tensor | None = None,
    has_image: torch.Tensor | None = None,
) -> TokenCredit:
    """The method's weight of every response token of one rollout batch.

    Args:
        cfg: the resolved method.
        response_mask: `[B, T]` bool or 0/1, the valid response tokens (padding rows all false).
        reasoning_score: `[B, T]` H_t (top-p entropy with p = ``cfg.entropy_top_p``); needed when
            ``cfg.uses_reasoning_score``.
        log_probs: `[B, T]` log π(o_t | I); needed, like the next two, when ``cfg.uses_perception_score``.
        counterfactual_log_probs: `[B, T]` log π(o_t | ∅) (any value in rows without an image).
        has_image: `[B]` bool, which responses had an image (others get perception score 0).

    Returns:
        a :class:`TokenCredit`.
    """
    valid = as_bool(response_mask)
    n_valid = int(torch.count_nonzero(valid))
    zeros = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device)
    no_set = torch.zeros_like(valid)
    checks = []

    entropy = zeros
    if cfg.uses_reasoning_score:
        entropy = _required(reasoning_score, "reasoning_score", valid.shape).float()
        checks.append(entropy)
    sensitivity = zeros
    if cfg.uses_perception_score:
        log_probs = _required(log_probs, "log_probs", valid.shape)
        counterfactual_log_probs = _required(counterfactual_log_probs, "counterfactual_log_probs", valid.shape)
        if has_image is None or has_image.shape != valid.shape[:1]:
            raise ValueError(f"has_image must be a [{valid.shape[0]}] bool tensor, got {has_image!r}")
        score = perception_score(log_probs, counterfactual_log_probs, cfg.perception_score)
        sensitivity = torch.where(has_image.to(valid.device)[:, None], score, 0.0)
        checks.append(sensitivity)

    reasoning, n_reasoning, reasoning_threshold = no_set, 0, 0.0
    perception, n_perception, perception_threshold = no_set, 0, 0.0
    extra: dict[str, float] = {}
    if cfg.use == "set_weights":
        if cfg.uses_reasoning_score:
            reasoning, n_reasoning, reasoning_threshold = select_with_threshold(
                entropy, valid, cfg.reasoning_quantile, cfg.scope
            )
        if cfg.uses_perception_score and cfg.perception_quantile > 0:
            perception, n_perception, perception_threshold = select_with_threshold(
                sensitivity, valid, cfg.perception_quantile, cfg.scope
            )
        weights = set_weights(
            reasoning, perception, valid, cfg.reasoning_weight, cfg.perception_weight, cfg.overlap_weight,
            cfg.other_weight,
        )  # fmt: skip
    else:  # pgpo_soft
        weights = pgpo_weights(_finite_or_zero(sensitivity), valid, cfg.pgpo_tau, cfg.pgpo_beta)
        extra["max_weight"] = float(weights.max()) if n_valid else 0.0

    scale = torch.ones(valid.shape[0], dtype=torch.float32, device=valid.device)
    if cfg.trajectory_scaling == "vppo":
        scale = trajectory_scale(_finite_or_zero(sensitivity), valid, has_image.to(valid.device), cfg.vppo_min_scale)
        weights = weights * scale[:, None]
        scaled = scale[valid.any(dim=1)]
        extra["trajectory_scale_min"] = float(scaled.min()) if scaled.numel() else 1.0
        extra["trajectory_scale_max"] = float(scaled.max()) if scaled.numel() else 1.0

    # |x| < inf is false for ±inf and NaN alike.
    finite_sensitivity = valid & (sensitivity.abs() < math.inf)
    nonfinite = torch.zeros_like(valid)
    for score in checks:
        nonfinite |= valid & ~(score.abs() < math.inf)
    # One device-to-host copy for the sums, not one sync per value.
    n_both, n_finite_sensitivity, n_nonfinite, sensitivity_sum, weight_sum = torch.stack(
        [
            torch.count_nonzero(reasoning & perception).double(),
            torch.count_nonzero(finite_sensitivity).double(),
            torch.count_nonzero(nonfinite).double(),
            torch.where(finite_sensitivity, sensitivity, 0).sum().double(),
            weights.sum(dtype=torch.float64),
        ]
    ).tolist()
    per_valid = 1.0 / max(n_valid, 1)  # every count is 0 when there are no valid tokens
    metrics = {
        "reasoning_fraction": n_reasoning * per_valid,
        "perception_fraction": n_perception * per_valid,
        "overlap_fraction": n_both * per_valid,
        "reasoning_threshold": reasoning_threshold,
        "perception_threshold": perception_threshold,
        "mean_weight": weight_sum * per_valid,
        "mean_sensitivity": sensitivity_sum / max(n_finite_sensitivity, 1.0),
        "nonfinite_fraction": n_nonfinite * per_valid,
        **extra,
    }
    return TokenCredit(weights, reasoning, perception, entropy, sensitivity, scale, metrics)


def _required(tensor: torch.Tensor | None, name: str, shape: torch.Size) -> torch.Tensor:
    if tensor is None or tensor.shape != shape:
        got = None if tensor is None else tuple(tensor.shape)
        raise ValueError(f"{name} must be a tensor of shape {tuple(shape)} (the response mask's), got {got}")
    return tensor.detach()


def _finite_or_zero(score: torch.Tensor) -> torch.Tensor:
    """Non-finite scores (counted in ``nonfinite_fraction``) as 0 for the per-response normalisations."""
    return torch.where(score.abs() < math.inf, score, 0.0)
