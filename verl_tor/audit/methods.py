"""The one table the audit reads methods from: name -> which counterfactual it needs, and (scores) -> sets, weights.

Every entry calls the trainer's own code for its scores, sets and weights (``verl_tor.steps``), so what the audit
shows is what training with that method would do on the same tokens. When the method registry
(``tor.method=<name>``, ``verl_tor.methods``) lands, this table is where it plugs in: ``AUDIT_METHODS`` becomes a
view of the registry and :class:`ScoreInputs` gains the signed counterfactual log-probs the registry's perception
scores read (today the trainer's pass stores |Δ log π| only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from verl_tor.methods.tor import ToRConfig
from verl_tor.steps import batch_token_sets, batch_token_weights


@dataclass
class ScoreInputs:
    """What one rollout batch gives every method, per sample (``[R_i]`` response-aligned tensors, batch order).

    Attributes:
        response_mask: which response tokens are trained on.
        is_padding: veRL's data-parallel padding rows (take no part in any selection).
        entropy: veRL's full-vocabulary entropy of each token's next-token distribution (the old-log-prob forward).
        truncated_entropy: the top-p entropy of the same forward (``tor.entropy_top_p`` < 1), else None.
        sensitivity: per counterfactual name, |log π(o_t | I) − log π(o_t | ∅)| of each token (0 without an image).
    """

    response_mask: list[torch.Tensor]
    is_padding: list[bool]
    entropy: list[torch.Tensor]
    truncated_entropy: list[torch.Tensor] | None
    sensitivity: dict[str, list[torch.Tensor]]


@dataclass
class MethodResult:
    """One method's choices on the batch: per-sample ``[R_i]`` tensors.

    Attributes:
        scores: score name -> values (a set of the same name selects by that score).
        sets: set name -> bool masks of the selected tokens.
        weights: the per-token weight the policy loss would use.
        thresholds: set name -> the smallest selected score (0 when nothing is selected).
        counterfactual: the counterfactual its perception score used (None: no extra pass).
        config: the resolved components, for the record.
    """

    scores: dict[str, list[torch.Tensor]]
    sets: dict[str, list[torch.Tensor]]
    weights: list[torch.Tensor]
    thresholds: dict[str, float]
    counterfactual: str | None
    config: dict


@dataclass(frozen=True)
class AuditMethod:
    """A token-credit method as the audit runs it."""

    name: str
    description: str
    counterfactual: Callable[[ToRConfig], str | None]
    """The counterfactual input its perception score needs (None: no extra pass), given the run's ``tor:`` section."""
    compute: Callable[[ScoreInputs, ToRConfig], MethodResult]


def _tor(inputs: ScoreInputs, cfg: ToRConfig) -> MethodResult:
    """ToR (arXiv 2603.25077) exactly as the trainer weights: ``verl_tor.steps`` on the same scores."""
    entropy = inputs.entropy if cfg.entropy_top_p == 1.0 else inputs.truncated_entropy
    if entropy is None:
        raise ValueError("the old-log-prob forward returned no truncated entropy for tor.entropy_top_p < 1")
    sensitivity = inputs.sensitivity[cfg.counterfactual]
    args = (inputs.response_mask, entropy, sensitivity, inputs.is_padding, cfg)
    weights, metrics = batch_token_weights(*args)
    reasoning, perception = batch_token_sets(*args)
    return MethodResult(
        scores={"reasoning": entropy, "perception": sensitivity},
        sets={"reasoning": reasoning, "perception": perception},
        weights=weights,
        thresholds={"reasoning": metrics["reasoning_threshold"], "perception": metrics["perception_threshold"]},
        counterfactual=cfg.counterfactual,
        config=dataclasses.asdict(cfg),
    )


def _grpo(inputs: ScoreInputs, cfg: ToRConfig) -> MethodResult:
    """GRPO: every valid token has weight 1 (no selection): the baseline under identical settings."""
    weights = [
        torch.zeros(len(mask)) if pad else mask.float()
        for mask, pad in zip(inputs.response_mask, inputs.is_padding, strict=True)
    ]
    return MethodResult(scores={}, sets={}, weights=weights, thresholds={}, counterfactual=None, config={})


AUDIT_METHODS: dict[str, AuditMethod] = {
    "tor": AuditMethod(
        "tor",
        "ToR: top α_r by top-p entropy (T_r), top α_p by |Δ log π| without the image (T_p), weights γ (Eq. 9)",
        lambda cfg: cfg.counterfactual,
        _tor,
    ),
    "grpo": AuditMethod("grpo", "GRPO: every token weight 1", lambda cfg: None, _grpo),
}
DEFAULT_METHODS = ("tor", "grpo")


def resolve_methods(names: Sequence[str]) -> list[AuditMethod]:
    """The table's entries for ``names`` (in order, without repeats); ``ValueError`` naming an unknown one."""
    unknown = [name for name in names if name not in AUDIT_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(AUDIT_METHODS)}")
    if not names:
        raise ValueError(f"no method to audit; known: {', '.join(AUDIT_METHODS)}")
    return [AUDIT_METHODS[name] for name in dict.fromkeys(names)]


def counterfactuals_needed(methods: Sequence[AuditMethod], cfg: ToRConfig) -> list[str]:
    """The distinct counterfactual passes ``methods`` need, in order of first use."""
    return list(dict.fromkeys(c for method in methods if (c := method.counterfactual(cfg)) is not None))
