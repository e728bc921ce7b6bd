"""The counterfactuals that take the image's vision tokens out of the prompt: ``remove_image`` (ToR) and
``mask_image_attention`` (PGPO).

``remove_image``, ToR's ∅ of Eq. 8: S_t = | log π(o_t | I, q, o_<t) − log π(o_t | ∅, q, o_<t) |, ∅ = the prompt as
the chat template and tokenizer write the conversation without its images. Every ``<|vision_start|> …
<|vision_end|>`` block is deleted, and the text on the two sides of each deleted block is tokenized again as one
text (the tokenizer would merge ``".\\n"`` + ``"\\n"`` into ``".\\n\\n"``), with the turn's content trimmed again for
families whose chat template trims it (Qwen3.5). The position ids become those of text-only input (every row
``arange(L)``: the Qwen-VL families' rope index without images).

``mask_image_attention``, PGPO's counterfactual: the tokens after an image cannot attend to its vision tokens (the
``<|image_pad|>`` positions that carry the vision tower's features; the ``<|vision_start|>`` / ``<|vision_end|>``
markers are ordinary text tokens and stay visible, so the policy still reads "an image was here"). Attention is
causal, so nothing before an image attends to it either; deleting the vision tokens while every other token keeps
its token id and its M-RoPE position of the image-present prompt is exactly that forward
(``tests/test_counterfactual.py`` checks it against an explicit 4-D attention mask over the vision columns, to
float32 rounding). The
text row of veRL's ``(4, L)`` position ids is ``arange(L)`` over the shortened sequence: transformers reads it only
to lay out (pack) sequences for attention, never for rotary positions. Nothing is re-tokenized: the text tokens are
the ones the policy read. In Qwen3.5's linear-attention layers there is no attention mask to apply; deleting the
tokens keeps them out of the recurrent state, which is what "cannot see the image" means there.

Both keep responses token for token, so veRL's ``response_from_nested`` (which aligns responses from the end of each
sequence) gives log-probs aligned with the old log-probs. Samples without an image are left out (Δ = 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class PromptText:
    """How a model's tokenizer and chat template write the text around an image (for re-tokenizing across it)."""

    tokenizer: Any = field(repr=False, compare=False)
    """The processor's tokenizer (a ``PreTrainedTokenizerFast``)."""
    added_token_ids: frozenset[int]
    """Ids of every added token (special or not): the tokenizer encodes the text between two of them on its own."""
    turn_start_id: int | None
    """``<|im_start|>`` when the chat template trims each turn's content (Qwen3.5), else None."""
    turn_end_id: int | None
    """``<|im_end|>`` under the same condition."""

    @classmethod
    def of(cls, tokenizer, trims_turn_content: bool) -> PromptText:
        added = frozenset(int(i) for i in tokenizer.added_tokens_decoder)
        turn = [tokenizer.convert_tokens_to_ids(token) for token in ("<|im_start|>", "<|im_end|>")]
        if trims_turn_content and not all(i in added for i in turn):
            raise ValueError("a chat template that trims turns needs <|im_start|> and <|im_end|> tokens")
        return cls(tokenizer, added, *(turn if trims_turn_content else (None, None)))

    def retokenized(self, run: list[int], after: int | None, before: int | None) -> list[int]:
        """The ids of ``run`` (text between two added tokens, a vision block deleted from it) tokenized as one text.

        Args:
            run: the run's remaining ids.
            after, before: the added tokens on either side (None at the prompt's ends).
        """
        text = self.tokenizer.decode(run, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if self.turn_start_id is not None:
            # `'<|im_start|>' + role + '\n' + content|trim + '<|im_end|>'`: trim the content, never the role line.
            header, content = "", text
            if after == self.turn_start_id and "\n" in text:
                role, _, content = text.partition("\n")
                header, content = role + "\n", content.lstrip()
            if before == self.turn_end_id:
                content = content.rstrip()
            text = header + content
        return self.tokenizer.encode(text, add_special_tokens=False)


def image_free_prompt(prompt: torch.Tensor, block: torch.Tensor, text: PromptText) -> torch.Tensor:
    """The prompt without its vision blocks, tokenized as the conversation written without the images.

    Each run of ordinary tokens between two kept added tokens that lost a block is decoded and encoded again
    (trimmed first where the template trims turns); every other token is kept as it is.

    Args:
        prompt: ``[P]`` prompt ids.
        block: ``[P]`` bool, the vision-block tokens to delete.

    Returns:
        ``[P']`` ids.
    """
    out: list[int] = []
    run: list[int] = []
    run_lost_block, after = False, None
    for token, deleted in zip(prompt.tolist(), block.tolist(), strict=True):
        if deleted:
            run_lost_block = True
        elif token in text.added_token_ids:
            out.extend(text.retokenized(run, after, token) if run_lost_block else run)
            out.append(token)
            run, run_lost_block, after = [], False, token
        else:
            run.append(token)
    out.extend(text.retokenized(run, after, None) if run_lost_block else run)
    return torch.tensor(out, dtype=prompt.dtype)


def _rows_with_images(prompts: list[torch.Tensor], vision_start_id: int) -> list[int]:
    return [i for i, prompt in enumerate(prompts) if (prompt == vision_start_id).any()]


def _text_only_batch(
    new_prompts: list[torch.Tensor],
    responses: list[torch.Tensor],
    response_masks: list[torch.Tensor],
    positions: list[torch.Tensor],
) -> TensorDict:
    """The actor's input TensorDict (no ``multi_modal_inputs``) of prompts + responses with the given positions."""
    return TensorDict(
        {
            "input_ids": nested_rows([torch.cat([p, r]) for p, r in zip(new_prompts, responses, strict=True)]),
            "position_ids": nested_rows(positions),
            "prompts": nested_rows(new_prompts),
            "responses": nested_rows(responses),
            "response_mask": nested_rows(response_masks),
            # veRL's agent loop sets the loss mask to the response mask.
            "loss_mask": nested_rows([m.clone() for m in response_masks]),
        },
        batch_size=[len(new_prompts)],
    )


def image_removed_batch(
    prompts: list[torch.Tensor],
    responses: list[torch.Tensor],
    response_masks: list[torch.Tensor],
    position_rows: int | None,
    vision_start_id: int,
    vision_end_id: int,
    text: PromptText,
) -> tuple[TensorDict | None, list[int]]:
    """``remove_image``: the inputs of every sample with a vision block, as written without its images.

    Args:
        prompts: per-sample prompt ids ``[P_i]`` (as the rollout produced them, vision pads expanded).
        responses: per-sample response ids ``[R_i]``.
        response_masks: per-sample ``[R_i]`` masks of the response tokens that are trained on.
        position_rows: k for models whose per-sample position ids are ``(k, L)`` (Qwen-VL: 4, a text row plus
            three M-RoPE rows); None for plain ``(L,)`` position ids.
        vision_start_id, vision_end_id: ids of ``<|vision_start|>`` and ``<|vision_end|>``.
        text: how the model's tokenizer writes the text around a block.

    Returns:
        ``(batch, rows)``: a TensorDict with nested ``input_ids``, ``position_ids``, ``prompts``, ``responses``,
        ``response_mask`` and ``loss_mask``, ready for ``actor_rollout_wg.compute_log_prob``; ``rows`` are the
        indices of the samples it holds. ``(None, [])`` when no sample has an image.
    """
    rows = _rows_with_images(prompts, vision_start_id)
    if not rows:
        return None, []
    new_prompts = [
        image_free_prompt(prompts[i], vision_block_mask(prompts[i], vision_start_id, vision_end_id), text) for i in rows
    ]
    kept_responses = [responses[i] for i in rows]
    positions = [torch.arange(len(p) + len(r)) for p, r in zip(new_prompts, kept_responses, strict=True)]
    if position_rows is not None:
        positions = [p.expand(position_rows, -1).clone() for p in positions]
    return _text_only_batch(new_prompts, kept_responses, [response_masks[i] for i in rows], positions), rows


def image_attention_masked_batch(
    prompts: list[torch.Tensor],
    responses: list[torch.Tensor],
    response_masks: list[torch.Tensor],
    position_ids: list[torch.Tensor],
    vision_token_ids: tuple[int, ...],
) -> tuple[TensorDict | None, list[int]]:
    """``mask_image_attention``: every sample with vision tokens, those deleted, every other token (the
    ``<|vision_start|>`` / ``<|vision_end|>`` markers included) at its image-present position.

    Args:
        prompts, responses, response_masks: as for :func:`image_removed_batch`.
        position_ids: per-sample position ids of the whole image-present sequence, ``[P_i + R_i]`` or
            ``(k, P_i + R_i)`` with a text row first (veRL's agent loop for M-RoPE models).
        vision_token_ids: the ids that carry visual features (``<|image_pad|>``, ``<|video_pad|>``).

    Returns:
        as :func:`image_removed_batch`.
    """
    vision = torch.tensor(vision_token_ids)
    rows = [i for i, prompt in enumerate(prompts) if torch.isin(prompt, vision).any()]
    if not rows:
        return None, []
    new_prompts, positions = [], []
    for i in rows:
        kept_prompt = ~torch.isin(prompts[i], vision)
        new_prompts.append(prompts[i][kept_prompt])
        kept = torch.cat([kept_prompt, torch.ones(len(responses[i]), dtype=torch.bool)])
        kept_positions = position_ids[i][..., kept].clone()
        if kept_positions.dim() == 2:
            # The text row lays out sequences for attention (packing, causal mask): it must count the new length.
            kept_positions[0] = torch.arange(kept_positions.shape[-1])
        positions.append(kept_positions)
    kept_responses = [responses[i] for i in rows]
    return _text_only_batch(new_prompts, kept_responses, [response_masks[i] for i in rows], positions), rows
