"""One entry point for every counterfactual input: :func:`counterfactual_batch`.

===================== ============ ============================================= ==================================
``tor.counterfactual`` method      what the policy reads instead of the image    cost (what the forward runs)
===================== ============ ============================================= ==================================
``remove_image``       ToR          the conversation written without its images   text + response tokens, no tower
``mask_image_attention`` PGPO       the image's tokens, unreadable by later ones  text + response tokens, no tower
``black_patches``      VPPO         the image, each patch black with p = 0.5      every token + the vision tower
``mask_patches``       PAPO-style   the image, each patch mean-grey with p = 0.6  every token + the vision tower
``gaussian_noise``     VEPO         the image + N(0, 1) on normalised pixels      every token + the vision tower
===================== ============ ============================================= ==================================

Details: :mod:`verl_tor.counterfactual.remove` (the first two), :mod:`verl_tor.counterfactual.images` (the others).
A sample without an image is never part of the batch: its counterfactual log-probs are its old log-probs (Δ = 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tensordict import NonTensorStack, TensorDict

from verl_tor.counterfactual.families import VisionBlockSpec
from verl_tor.counterfactual.images import PIXEL_COUNTERFACTUALS, counterfactual_pixels, sample_generator
from verl_tor.nested import nested_rows

COUNTERFACTUALS = ("remove_image", "mask_image_attention", *PIXEL_COUNTERFACTUALS)

REQUIRED_FIELDS = {
    "remove_image": ("prompts", "responses", "response_mask"),
    "mask_image_attention": ("prompts", "responses", "response_mask", "position_ids"),
    **{
        kind: ("prompts", "responses", "response_mask", "position_ids", "multi_modal_inputs")
        for kind in PIXEL_COUNTERFACTUALS
    },
}
"""The per-sample TransferQueue fields each counterfactual reads (``multi_modal_inputs`` is the expensive one)."""


@dataclass
class Samples:
    """Per-sample fields of a rollout batch as veRL's agent loop stores them (None: not read by the kind)."""

    prompts: list[torch.Tensor]
    """``[P_i]`` prompt ids, vision pads expanded."""
    responses: list[torch.Tensor]
    """``[R_i]`` response ids."""
    response_masks: list[torch.Tensor]
    """``[R_i]`` masks of the trained response tokens."""
    position_ids: list[torch.Tensor] | None = None
    """``(4, P_i + R_i)`` (M-RoPE) or ``[P_i + R_i]`` positions of the whole sequence."""
    multi_modal_inputs: list[dict[str, Any]] | None = None
    """The processor's outputs per sample (``pixel_values``, ``image_grid_thw``, …)."""


def counterfactual_batch(
    kind: str, spec: VisionBlockSpec, samples: Samples, seed: int, step: int
) -> tuple[TensorDict | None, list[int]]:
    """The actor's input batch of every sample with an image, under the counterfactual ``kind``.

    Args:
        kind: one of :data:`COUNTERFACTUALS`.
        spec: the model's :class:`VisionBlockSpec` (``vision_block_spec(processor, config)``).
        samples: the rollout batch's fields, at least :data:`REQUIRED_FIELDS` of ``kind``.
        seed: the run seed; with ``step`` and each sample's content it seeds the random counterfactuals.
        step: the training step.

    Returns:
        ``(batch, rows)``: a TensorDict for ``actor_rollout_wg.compute_log_prob`` (nested ``input_ids``,
        ``position_ids``, ``prompts``, ``responses``, ``response_mask``, ``loss_mask``, and ``multi_modal_inputs``
        for the pixel counterfactuals) and the indices of the samples it holds; ``(None, [])`` without images.

    Raises:
        ValueError: an unknown ``kind``; a video in a prompt where ``kind`` cannot honour it.
    """
    if kind == "remove_image":
        return spec.image_removed_batch(samples.prompts, samples.responses, samples.response_masks)
    if kind == "mask_image_attention":
        return spec.image_attention_masked_batch(
            samples.prompts, samples.responses, samples.response_masks, samples.position_ids
        )
    if kind in PIXEL_COUNTERFACTUALS:
        return pixel_counterfactual_batch(kind, spec, samples, seed, step)
    raise ValueError(f"tor.counterfactual must be one of {COUNTERFACTUALS}, got {kind!r}")


def pixel_counterfactual_batch(
    kind: str, spec: VisionBlockSpec, samples: Samples, seed: int, step: int
) -> tuple[TensorDict | None, list[int]]:
    """:func:`counterfactual_batch` of the pixel counterfactuals: every token kept, ``pixel_values`` changed."""
    spec.refuse_videos(samples.prompts, kind, "its pixels are video frames, which it does not change")
    if spec.pixels is None:
        raise ValueError(f"tor.counterfactual={kind} needs the model's image processor; the processor has none")
    rows = [i for i, prompt in enumerate(samples.prompts) if (prompt == spec.image_token_id).any()]
    if not rows:
        return None, []
    inputs = []
    for i in rows:
        original = samples.multi_modal_inputs[i]
        if "pixel_values_videos" in original:
            raise ValueError(f"tor.counterfactual={kind} does not support videos (sample {i} has one)")
        pixels = original["pixel_values"]
        generator = sample_generator(kind, seed, step, samples.prompts[i], pixels)
        inputs.append({**original, "pixel_values": counterfactual_pixels(kind, pixels, spec.pixels, generator)})
    prompts = [samples.prompts[i] for i in rows]
    responses = [samples.responses[i] for i in rows]
    masks = [samples.response_masks[i] for i in rows]
    batch = TensorDict(
        {
            "input_ids": nested_rows([torch.cat([p, r]) for p, r in zip(prompts, responses, strict=True)]),
            "position_ids": nested_rows([samples.position_ids[i] for i in rows]),
            "prompts": nested_rows(prompts),
            "responses": nested_rows(responses),
            "response_mask": nested_rows(masks),
            "loss_mask": nested_rows([m.clone() for m in masks]),
            "multi_modal_inputs": NonTensorStack(*inputs),
        },
        batch_size=[len(rows)],
    )
    return batch, rows
