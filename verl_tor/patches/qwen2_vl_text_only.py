"""veRL 0.9.1 + transformers 5: a Qwen2-VL / Qwen2.5-VL micro-batch without any image crashes.

``verl.models.transformers.qwen2_vl._get_input_embeds`` runs a dummy image through the vision tower when a
micro-batch has no pixels (so that every FSDP rank takes part in the same vision-tower collectives) and then
calls ``image_embeds.mean()``. In transformers 5 the vision tower returns a ``BaseModelOutputWithPooling``, not
a tensor, so this raises ``AttributeError``. The image branch of the same function already unpacks the output
with ``unpack_visual_output``; we do the same in the text-only branch and leave every other path to veRL.
Every image-removed (counterfactual) batch of ToR is such a micro-batch, as is any text-only data.
"""

from __future__ import annotations

from types import ModuleType

import torch

TARGET_MODULE = "verl.models.transformers.qwen2_vl"


def install(qwen2_vl: ModuleType) -> None:
    """Wrap ``qwen2_vl._get_input_embeds`` so that its text-only branch unpacks the vision output."""
    original = qwen2_vl._get_input_embeds
    if getattr(original, "_verl_tor_patched", False):
        return

    from verl.utils.transformers_compat import unpack_visual_output

    def _get_input_embeds(
        model,
        input_ids,
        attention_mask=None,
        pixel_values=None,
        pixel_values_videos=None,
        image_grid_thw=None,
        video_grid_thw=None,
    ):
        if pixel_values is not None or pixel_values_videos is not None:
            return original(
                model, input_ids, attention_mask, pixel_values, pixel_values_videos, image_grid_thw, video_grid_thw
            )
        inputs_embeds = model.get_input_embeddings()(input_ids)
        # Same dummy 4x4-patch image as veRL's branch, so FSDP ranks with and without images stay in step.
        vision = model.config.vision_config
        patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
        dummy_pixels = torch.zeros((16, patch_dim), dtype=inputs_embeds.dtype, device=inputs_embeds.device)
        dummy_grid = torch.tensor([[1, 4, 4]], dtype=torch.long, device=inputs_embeds.device)
        image_embeds, _ = unpack_visual_output(model.visual(dummy_pixels, grid_thw=dummy_grid))
        inputs_embeds = inputs_embeds + 0.0 * image_embeds.mean()
        if attention_mask is not None:
            attention_mask = attention_mask.to(inputs_embeds.device)
        return inputs_embeds, attention_mask

    _get_input_embeds._verl_tor_patched = True
    _get_input_embeds.__wrapped__ = original
    qwen2_vl._get_input_embeds = _get_input_embeds
