"""ToR's step logic on per-sample tensors, with no TransferQueue or worker in sight (tested directly).

The trainer (``verl_tor.trainer``) reads each rollout batch from TransferQueue as lists of per-sample ``[R_i]``
response-aligned tensors, calls these functions and writes their results back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import NonTensorStack, TensorDict

from verl_tor.methods.config import TokenCreditConfig
from verl_tor.methods.weights import token_weights
from verl_tor.nested import as_list, nested_rows
from verl_tor.policy_loss import WeightTarget

# veRL's per-token policy-loss multiplier (its rollout-correction weights), read by every policy loss.
ROLLOUT_IS_WEIGHTS = "rollout_is_weights"


def counterfactual_rows(
    old_log_probs: list[torch.Tensor], counterfactual_log_probs: list[torch.Tensor], rows: list[int]
) -> tuple[list[torch.Tensor], list[bool]]:
    """Per sample, log π(o_t | ∅) of its response tokens and whether it had an image.

    Args:
        old_log_probs: per-sample ``[R_i]`` response log-probs with the image.
        counterfactual_log_probs: ``[R_i]`` log-probs of the same responses under the counterfactual, for ``rows``.
        rows: indices into ``old_log_probs`` of the samples that had an image.

    Returns:
        per-sample ``[R_i]`` counterfactual log-probs (a sample without an image: its own log-probs, Δ = 0) and the
        per-sample image flags.
    """
    counterfactual = [lp.float() for lp in old_log_probs]
    has_image = [False] * len(old_log_probs)
    for row, log_probs in zip(rows, counterfactual_log_probs, strict=True):
        counterfactual[row], has_image[row] = log_probs.float(), True
    return counterfactual, has_image


def pad_rows_to_multiple(batch: TensorDict, multiple: int) -> TensorDict:
    """Repeat the first row until the batch size is a multiple of ``multiple`` (ranks × micro-batch size)."""
    missing = -len(batch) % multiple
    if missing == 0:
        return batch
    fields = {}
    for key, value in batch.items():
        if isinstance(value, NonTensorStack):  # per-sample python objects (multi_modal_inputs)
            items = value.tolist()
            fields[key] = NonTensorStack(*items, *[items[0]] * missing)
            continue
        rows = as_list(value)
        fields[key] = nested_rows(rows + [rows[0]] * missing)
    return TensorDict(fields, batch_size=[len(batch) + missing])


def padded(rows: list[torch.Tensor], width: int, dtype=torch.float32) -> torch.Tensor:
    """Right-pad per-sample ``[R_i]`` tensors into ``[B, width]``."""
    out = torch.zeros(len(rows), width, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def padded_batch(
    response_mask: list[torch.Tensor], scores: list[list[torch.Tensor]], is_padding: list[bool]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The rollout batch as ``[B, T]`` tensors: the valid-token mask (padding rows all false) and each score."""
    width = max((len(m) for m in response_mask), default=0)
    mask = padded(response_mask, width, torch.bool)
    mask[torch.tensor(is_padding, dtype=torch.bool)] = False
    return mask, [padded(rows, width) for rows in scores]


@dataclass
class BatchCredit:
    """A method's decision for a rollout batch, per sample (``[R_i]`` tensors)."""

    weights: list[torch.Tensor]
    reasoning: list[torch.Tensor]
    perception: list[torch.Tensor]
    reasoning_score: list[torch.Tensor]
    perception_score: list[torch.Tensor]
    metrics: dict[str, float]


def batch_token_credit(
    cfg: TokenCreditConfig,
    response_mask: list[torch.Tensor],
    is_padding: list[bool],
    reasoning_score: list[torch.Tensor] | None = None,
    old_log_probs: list[torch.Tensor] | None = None,
    counterfactual_log_probs: list[torch.Tensor] | None = None,
    has_image: list[bool] | None = None,
) -> BatchCredit:
    """The method's weight of every response token (``verl_tor.methods.weights.token_weights``) over the whole
    rollout batch.

    Padding rows that veRL adds for data-parallel balance take no part in the selection and get weight 0.

    Args:
        cfg: the resolved method.
        response_mask, reasoning_score, old_log_probs, counterfactual_log_probs: per-sample ``[R_i]`` tensors (the
            scores only where the method uses them).
        is_padding: per-sample flag from veRL's batch tags.
        has_image: per-sample image flag (needed with the log-probs).
    """
    named = {"reasoning_score": reasoning_score, "log_probs": old_log_probs,
             "counterfactual_log_probs": counterfactual_log_probs}  # fmt: skip
    given = {name: rows for name, rows in named.items() if rows is not None}
    mask, padded_scores = padded_batch(response_mask, list(given.values()), is_padding)
    images = None if has_image is None else torch.tensor(has_image, dtype=torch.bool)
    credit = token_weights(cfg, mask, **dict(zip(given, padded_scores, strict=True)), has_image=images)

    def rows(tensor: torch.Tensor) -> list[torch.Tensor]:
        return [tensor[i, : len(m)] for i, m in enumerate(response_mask)]

    return BatchCredit(
        weights=rows(credit.weights),
        reasoning=rows(credit.reasoning),
        perception=rows(credit.perception),
        reasoning_score=rows(credit.reasoning_score),
        perception_score=rows(credit.perception_score),
        metrics=credit.metrics,
    )


def apply_token_weights(
    target: WeightTarget,
    weights: list[torch.Tensor],
    advantages: list[torch.Tensor],
    verl_loss_multipliers: list[torch.Tensor] | None = None,
) -> dict[str, list[torch.Tensor]]:
    """The TransferQueue fields that carry ToR's weights into the policy loss (``verl_tor.policy_loss``).

    Args:
        target: "advantages" multiplies each token's advantage by its weight; "loss" writes veRL's per-token loss
            multiplier ``rollout_is_weights`` (times veRL's own rollout-correction weights when it has them).
        weights, advantages, verl_loss_multipliers: per-sample ``[R_i]`` tensors.

    Returns:
        field name → per-sample ``[R_i]`` tensors to store.
    """
    if target == "advantages":
        return {"advantages": [adv * w.to(adv.dtype) for adv, w in zip(advantages, weights, strict=True)]}
    if verl_loss_multipliers is None:
        return {ROLLOUT_IS_WEIGHTS: [w.clone() for w in weights]}
    return {ROLLOUT_IS_WEIGHTS: [m * w.to(m.dtype) for m, w in zip(verl_loss_multipliers, weights, strict=True)]}


def unweighted_advantage_metrics(
    advantages: list[torch.Tensor], response_mask: list[torch.Tensor], is_padding: list[bool]
) -> dict[str, float]:
    """Mean, max and min of the advantages before ToR's weights, over the valid tokens of the real samples: veRL's
    ``critic/advantages/*`` computed the same way, so that a ToR run can be compared with its baseline."""
    rows = [(adv, mask.bool()) for adv, mask, pad in zip(advantages, response_mask, is_padding, strict=True) if not pad]
    valid = torch.cat([adv[mask].float() for adv, mask in rows]) if rows else torch.zeros(0)
    if valid.numel() == 0:
        return {f"advantages_unweighted/{name}": float("nan") for name in ("mean", "max", "min")}
    return {
        "advantages_unweighted/mean": valid.mean().item(),
        "advantages_unweighted/max": valid.max().item(),
        "advantages_unweighted/min": valid.min().item(),
    }


def require_no_images_in_responses(responses: list[torch.Tensor], placeholder_ids: list[int]) -> None:
    """Stop when a response holds an image or video placeholder token (e.g. ``<|image_pad|>``).

    Such tokens come from a tool observation that returned an image inside the response (multi-turn agent loops);
    the image-removed pass deletes vision blocks from the prompt only and has no pixels for them, so their visual
    sensitivity would be measured against a corrupted input.

    Args:
        responses: per-sample ``[R_i]`` response ids of the real (non-padding) samples.
        placeholder_ids: the processor's image/video placeholder ids (veRL's ``get_vision_placeholder_token_ids``).
    """
    if not placeholder_ids:
        return
    ids = torch.tensor(placeholder_ids)
    with_images = sum(bool(torch.isin(response, ids).any()) for response in responses)
    if with_images:
        raise RuntimeError(
            f"{with_images} of {len(responses)} responses of this step hold image or video tokens (a tool observation "
            "that returned an image inside the response). ToR's image-removed pass deletes images from the prompt "
            "only and has no pixels for those, so their visual sensitivity would be measured against a corrupted "
            "input. Run such agent loops without ToR's perception score (tor.perception_weight equal to "
            "tor.other_weight skips the pass) or with tools that return text."
        )
