"""Where ToR's token weights enter each of veRL 0.9.1's policy losses (``actor.policy_loss.loss_mode``).

The method multiplies each token's policy-gradient loss term by its weight w (Eq. 9). veRL offers two places to do
that from outside the loss:

- ``advantages``: multiply the token's advantage by w. Exact for a loss whose per-token term is positively
  homogeneous in the advantage, ℓ(w·A) = w·ℓ(A) for w ≥ 0 (a product, a clip or a min/max of products with A, a
  branch on the sign of A): ``vanilla`` (also with dual clip), ``dppo_tv``, ``dppo_kl``, ``gspo``, ``sapo``,
  ``gpg``, ``cispo``.
- ``loss``: veRL's own per-token loss multiplier, the ``rollout_is_weights`` field every one of these losses
  multiplies into its per-token loss before aggregating (ToR multiplies veRL's rollout-correction weights by w
  when those are on). Needed where the per-token term is not homogeneous in A: ``clip_cov`` and ``kl_cov`` pick
  the tokens they clip or penalise by a covariance of *centred* advantages, ``kl_cov``'s and ``dro``'s penalties
  do not scale with A, so weighting the advantage would change which tokens are clipped and leave the penalty of
  a zero-weight token in place.

``geo_mean`` has no per-token loss (it averages log-ratios and advantages per sequence, then takes one term per
sequence), so a token weight has no place in it; ``bypass_mode`` reuses the rollout's log-probs instead of the
old-log-prob forward that gives ToR its entropy. Both, and any mode veRL or a plugin adds later, stop the run at
start-up. ``tests/test_policy_loss.py`` establishes the table by running every registered loss both ways.
"""

from __future__ import annotations

from typing import Literal

from omegaconf import DictConfig

LOSS_MODE_KEY = "actor_rollout_ref.actor.policy_loss.loss_mode"

WeightTarget = Literal["advantages", "loss"]

WEIGHT_TARGETS: dict[str, WeightTarget] = {
    "vanilla": "advantages",
    "dppo_tv": "advantages",
    "dppo_kl": "advantages",
    "gspo": "advantages",
    "sapo": "advantages",
    "gpg": "advantages",
    "cispo": "advantages",
    "clip_cov": "loss",
    "kl_cov": "loss",
    "dro": "loss",
}
"""Loss mode → where ToR's weights go; a mode not listed cannot be weighted per token."""

UNSUPPORTED_LOSS_MODES: dict[str, str] = {
    "geo_mean": "it has no per-token loss (log-ratios and advantages are averaged per sequence)",
    "bypass_mode": "it skips the old-log-prob forward that gives ToR its token entropies",
}


def weight_target(loss_mode: str) -> WeightTarget:
    """Where ToR's weights enter the loss of ``loss_mode``; ``ValueError`` naming the key when they cannot."""
    if loss_mode in WEIGHT_TARGETS:
        return WEIGHT_TARGETS[loss_mode]
    reason = UNSUPPORTED_LOSS_MODES.get(loss_mode, "ToR does not know where its per-token weight goes in it")
    raise ValueError(
        f"{LOSS_MODE_KEY}={loss_mode} cannot be used with ToR: {reason}. Supported: {', '.join(WEIGHT_TARGETS)}"
    )


def loss_mode(config: DictConfig) -> str:
    """The run's policy-loss mode, with veRL's default."""
    return config.actor_rollout_ref.actor.get("policy_loss", {}).get("loss_mode", "vanilla")
