"""The methods the audit compares: every preset of the registry (``verl_tor.methods``, ``tor.method=<name>``).

Each audited method is its preset resolved exactly as a training run resolves ``tor.method=<name>``
(``TokenCreditConfig.from_mapping``), and its scores, sets and weights come from the trainer's own function
(``verl_tor.steps.batch_token_credit``) on the scores of the same rollout batch, so what the audit shows is what
training with that method would do on these tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from verl_tor.methods.config import TokenCreditConfig
from verl_tor.methods.registry import METHODS
from verl_tor.steps import batch_token_credit

DEFAULT_METHODS = tuple(METHODS)


@dataclass
class ScoreInputs:
    """What one rollout batch gives every method, per sample (``[R_i]`` response-aligned tensors, batch order).

    Attributes:
        response_mask: which response tokens are trained on.
        is_padding: veRL's data-parallel padding rows (take no part in any selection).
        entropy: veRL's full-vocabulary entropy of each token's next-token distribution (the old-log-prob forward).
        truncated_entropy: the top-p entropy of the same forward at ``truncated_top_p``, else None.
        truncated_top_p: the p of ``truncated_entropy`` (the run's ``tor.entropy_top_p``).
        old_log_probs: log π(o_t | I) of the same forward.
        counterfactual_log_probs: per counterfactual name, log π(o_t | ∅) of each token (its own log-prob when the
            sample has no image).
        has_image: per sample, whether its prompt has an image.
    """

    response_mask: list[torch.Tensor]
    is_padding: list[bool]
    entropy: list[torch.Tensor]
    truncated_entropy: list[torch.Tensor] | None
    truncated_top_p: float | None
    old_log_probs: list[torch.Tensor]
    counterfactual_log_probs: dict[str, list[torch.Tensor]]
    has_image: list[bool]


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
    """A registered method as the audit runs it: its resolved preset."""

    name: str
    description: str
    config: TokenCreditConfig

    @property
    def counterfactual(self) -> str | None:
        """The counterfactual input its perception score needs (None: no extra pass)."""
        return self.config.counterfactual if self.config.uses_perception_score else None

    def compute(self, inputs: ScoreInputs) -> MethodResult:
        """The trainer's weights of this method on ``inputs`` (``batch_token_credit``)."""
        cfg = self.config
        scores = {}
        if cfg.uses_reasoning_score:
            scores["reasoning_score"] = reasoning_score(inputs, cfg.entropy_top_p, self.name)
        if self.counterfactual is not None:
            scores["old_log_probs"] = inputs.old_log_probs
            scores["counterfactual_log_probs"] = inputs.counterfactual_log_probs[self.counterfactual]
            scores["has_image"] = inputs.has_image
        credit = batch_token_credit(cfg, inputs.response_mask, inputs.is_padding, **scores)
        names = []
        if cfg.uses_reasoning_score:
            names.append("reasoning")
        if cfg.uses_perception_score:
            names.append("perception")
        sets = {"reasoning": credit.reasoning, "perception": credit.perception}
        values = {"reasoning": credit.reasoning_score, "perception": credit.perception_score}
        # PGPO's soft weights select no set: they weight every token by its perception score.
        selected = [name for name in names if cfg.use == "set_weights"]
        return MethodResult(
            scores={name: values[name] for name in names},
            sets={name: sets[name] for name in selected},
            weights=credit.weights,
            thresholds={name: credit.metrics[f"{name}_threshold"] for name in selected},
            counterfactual=self.counterfactual,
            config=asdict(cfg),
        )


def reasoning_score(inputs: ScoreInputs, top_p: float, method: str) -> list[torch.Tensor]:
    """The forward's entropy at ``top_p``: veRL's full entropy at p = 1, else the run's truncated entropy."""
    if top_p == 1.0:
        return inputs.entropy
    if inputs.truncated_entropy is None or inputs.truncated_top_p != top_p:
        raise ValueError(
            f"method {method} needs the top-p entropy at p = {top_p}, but the forward computed it at "
            f"p = {inputs.truncated_top_p} (tor.entropy_top_p): audit it in a run with tor.entropy_top_p={top_p}"
        )
    return inputs.truncated_entropy


def resolve_methods(names: Sequence[str]) -> list[AuditMethod]:
    """The registry's presets for ``names`` (in order, without repeats); ``ValueError`` naming an unknown one."""
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if not names:
        raise ValueError(f"no method to audit; known: {', '.join(METHODS)}")
    return [
        AuditMethod(name, METHODS[name].paper, TokenCreditConfig.from_mapping({"method": name}))
        for name in dict.fromkeys(names)
    ]


def counterfactuals_needed(methods: Sequence[AuditMethod]) -> list[str]:
    """The distinct counterfactual passes ``methods`` need, in order of first use."""
    return list(dict.fromkeys(m.counterfactual for m in methods if m.counterfactual is not None))


def truncated_top_p(methods: Sequence[AuditMethod]) -> float | None:
    """The one top-p < 1 the methods' reasoning scores need (the forward computes one); None if none needs one."""
    wanted = {m.config.entropy_top_p for m in methods if m.config.uses_reasoning_score} - {1.0}
    if len(wanted) > 1:
        raise ValueError(f"the audited methods need top-p entropies at several p ({sorted(wanted)}); audit them apart")
    return next(iter(wanted), None)
