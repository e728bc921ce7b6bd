"""The image-removed ("visual counterfactual") batch of ToR's perception score (Eq. 8).

S_t = | log π(o_t | I, q, o_<t) − log π(o_t | ∅, q, o_<t) |, where ∅ means the image is removed from the prompt:
every ``<|vision_start|> … <|vision_end|>`` block is deleted from the prompt ids (all images of a sample), the
position ids become those of text-only input (every row ``arange(L)``, which is what the Qwen-VL families' rope
index gives without images), and no ``multi_modal_inputs`` are passed. Responses are kept token for token, so veRL's
``response_from_nested`` (which aligns responses from the end of each sequence) gives log-probs aligned with the
old log-probs of the full prompt. Samples without an image are left out of the pass; their sensitivity is 0.

Deleting tokens equals re-rendering the chat without the image unless the text on the two sides of a deleted
block would merge into one token (or the chat template trims the text next to it, as Qwen3.5's does); an image
that starts its turn, followed by text that does not start with whitespace, is always exact. Which blocks to
delete and how many position rows to build is read per model family from :mod:`verl_tor.counterfactual.families`;
``tests/test_model_families.py`` and ``tests/test_counterfactual.py`` check it against each family's processor,
chat template and model.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict

from verl_tor.nested import nested_rows


def vision_block_mask(ids: torch.Tensor, vision_start_id: int, vision_end_id: int) -> torch.Tensor:
    """True at every token of a ``<|vision_start|> … <|vision_end|>`` block, both markers included.

    Args:
        ids: ``[L]`` token ids of one prompt.

    Returns:
        ``[L]`` bool mask.
    """
    starts = (ids == vision_start_id).long()
    ends = (ids == vision_end_id).long()
    # Open blocks after each token, counting a block's end marker as still inside it.
    depth = torch.cumsum(starts, 0) - torch.cumsum(ends, 0) + ends
    return depth > 0


def image_removed_batch(
    prompts: list[torch.Tensor],
    responses: list[torch.Tensor],
    response_masks: list[torch.Tensor],
    position_rows: int | None,
    vision_start_id: int,
    vision_end_id: int,
) -> tuple[TensorDict | None, list[int]]:
    """Build the image-removed inputs of every sample whose prompt has a vision block.

    Args:
        prompts: per-sample prompt ids ``[P_i]`` (as the rollout produced them, vision pads expanded).
        responses: per-sample response ids ``[R_i]``.
        response_masks: per-sample ``[R_i]`` masks of the response tokens that are trained on.
        position_rows: k for models whose per-sample position ids are ``(k, L)`` (Qwen-VL: 4, a text row plus
            three M-RoPE rows); None for plain ``(L,)`` position ids.
        vision_start_id, vision_end_id: ids of ``<|vision_start|>`` and ``<|vision_end|>``.

    Returns:
        ``(batch, rows)``: a TensorDict with nested ``input_ids``, ``position_ids``, ``prompts``, ``responses``,
        ``response_mask`` and ``loss_mask`` (the response mask, as veRL's agent loop sets it), ready for ``actor_rollout_wg.compute_log_prob``; ``rows`` are the indices of
        the samples it holds. ``(None, [])`` when no sample has an image.
    """
    rows = [i for i, prompt in enumerate(prompts) if (prompt == vision_start_id).any()]
    if not rows:
        return None, []
    new_prompts = [prompts[i][~vision_block_mask(prompts[i], vision_start_id, vision_end_id)] for i in rows]
    kept_responses = [responses[i] for i in rows]
    response_mask = [response_masks[i] for i in rows]
    input_ids = [torch.cat([p, r]) for p, r in zip(new_prompts, kept_responses, strict=True)]
    positions = [torch.arange(len(ids)) for ids in input_ids]
    if position_rows is not None:
        positions = [p.expand(position_rows, -1).clone() for p in positions]
    batch = TensorDict(
        {
            "input_ids": nested_rows(input_ids),
            "position_ids": nested_rows(positions),
            "prompts": nested_rows(new_prompts),
            "responses": nested_rows(kept_responses),
            "response_mask": nested_rows(response_mask),
            "loss_mask": nested_rows([m.clone() for m in response_mask]),
        },
        batch_size=[len(rows)],
    )
    return batch, rows
