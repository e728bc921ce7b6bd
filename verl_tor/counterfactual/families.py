r"""The model families whose counterfactual inputs ToR can build, and what "without the image" means for each
(one row per family).

For every supported family an image occupies exactly one ``<|vision_start|> <|image_pad|>×N <|vision_end|>`` block
of the prompt; the chat template writes nothing else for it (no newline, no "Picture k:" unless ``add_vision_id``)
and the processor only expands ``<|image_pad|>``. Deleting the blocks therefore leaves the text of the conversation
rendered without its images, and the position ids of text-only input are ``arange(L)`` in every row: veRL's agent
loop stores a text row plus the processor's three M-RoPE rows (the model's ``get_rope_index``, which for a prompt
without vision tokens counts every row up by one per token, interleaved M-RoPE in Qwen3-VL and Qwen3.5 included).
The tokens are not always the re-rendering's: the tokenizer encodes the text between two added tokens on its own,
so text on the two sides of a block would merge into other tokens once the block is gone (``"Look.\n"`` + image +
``"\n..."`` leaves ``.\n`` + ``\n`` where a re-rendering has ``.\n\n``), and Qwen3.5's template trims each turn's
content, so whitespace between a leading image and the text would stay. ``remove_image`` therefore tokenizes the
text around each deleted block again (:mod:`verl_tor.counterfactual.remove`).
``tests/test_model_families.py`` checks all of this per family against the family's processor, chat template and
model (and the notes of each row what else was established).

A model whose ``model_type`` is not in :data:`FAMILIES` is refused with a ValueError at start-up (veRL also trains
e.g. ``glm4v`` and ``kimi_vl``, whose image blocks look different). Videos: Qwen3-VL and Qwen3.5 write a
``<t seconds>`` text timestamp before each frame's vision block, which block deletion would leave behind, so their
video prompts are refused when the image-removed batch is built; the pixel counterfactuals refuse videos in every
family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict

from verl_tor.counterfactual.images import PatchGeometry
from verl_tor.counterfactual.remove import PromptText, image_attention_masked_batch, image_removed_batch

# Per-sample position ids of M-RoPE models in veRL's agent loop: a text row and the (temporal, height, width) rows.
MROPE_POSITION_ROWS = 4


@dataclass(frozen=True)
class ModelFamily:
    """A family of models (its HF ``model_type`` values) whose vision blocks ToR knows how to remove."""

    name: str
    model_types: tuple[str, ...]
    video_frames_have_timestamps: bool
    """The processor writes ``<t seconds>`` before each video frame's block (outside it)."""
    trims_turn_content: bool
    """The chat template writes each turn's content ``|trim``-ed (whitespace stripped at both ends)."""
    notes: str
    """What was established for the image-removed pass (documentation)."""


FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily(
        name="qwen2_vl",
        model_types=("qwen2_vl", "qwen2_5_vl"),
        video_frames_have_timestamps=False,
        trims_turn_content=False,
        notes="Default system prompt; an image-free micro-batch needs verl_tor.patches.qwen2_vl_text_only.",
    ),
    ModelFamily(
        name="qwen3_vl",
        model_types=("qwen3_vl", "qwen3_vl_moe"),
        video_frames_have_timestamps=True,
        trims_turn_content=False,
        notes=(
            "No default system prompt. DeepStack: for a micro-batch without images veRL passes no visual positions "
            "and no DeepStack features (a zero-weighted dummy vision pass only), i.e. the plain text forward."
        ),
    ),
    ModelFamily(
        name="qwen3_5",
        model_types=("qwen3_5", "qwen3_5_moe"),
        video_frames_have_timestamps=True,
        trims_turn_content=True,
        notes=(
            "Qwen3-VL's processor and rope index. The template trims each turn's content, so text that begins or "
            "ends a turn next to an image keeps whitespace after deletion that a re-rendering trims (remove_image "
            "trims it again). "
            "Linear-attention layers: each (shortened) sequence starts from a zero state, also packed "
            "(veRL passes cu_seqlens); no DeepStack."
        ),
    ),
)


def family_of_model_type(model_type: str) -> ModelFamily | None:
    """The family a HF ``model_type`` belongs to, or None."""
    return next((family for family in FAMILIES if model_type in family.model_types), None)


def supported_model_types() -> list[str]:
    return [model_type for family in FAMILIES for model_type in family.model_types]


@dataclass(frozen=True)
class VisionBlockSpec:
    """How to find the vision blocks of one model's prompts and build its counterfactual inputs (ids read from its
    config, text rules from its tokenizer and family, pixel layout from its image processor)."""

    family: str
    model_type: str
    vision_start_id: int
    vision_end_id: int
    image_token_id: int
    video_token_id: int | None
    position_rows: int | None
    """k for per-sample ``(k, L)`` position ids (M-RoPE: 4), None for plain ``(L,)`` ones."""
    video_frames_have_timestamps: bool
    text: PromptText
    pixels: PatchGeometry | None
    """None when the processor has no image processor."""

    def refuse_videos(self, prompts: list[torch.Tensor], kind: str, reason: str) -> None:
        """ValueError naming ``tor.counterfactual`` when a prompt holds a video."""
        if self.video_token_id is None:
            return
        with_video = [i for i, prompt in enumerate(prompts) if (prompt == self.video_token_id).any()]
        if with_video:
            raise ValueError(
                f"tor.counterfactual={kind} does not support videos for {self.model_type}: {reason} "
                f"(samples {with_video[:5]} of this batch have a video)"
            )

    def image_removed_batch(
        self, prompts: list[torch.Tensor], responses: list[torch.Tensor], response_masks: list[torch.Tensor]
    ) -> tuple[TensorDict | None, list[int]]:
        """:func:`verl_tor.counterfactual.remove.image_removed_batch` for this model.

        Args:
            prompts: per-sample prompt ids ``[P_i]`` (vision pads expanded, as the rollout produced them).
            responses: per-sample response ids ``[R_i]``.
            response_masks: per-sample ``[R_i]`` masks of the trained response tokens.

        Returns:
            ``(batch, rows)``: nested inputs of every sample with a vision block, without its blocks, and their
            indices; ``(None, [])`` when no sample has one.

        Raises:
            ValueError: a prompt with a video whose frames carry timestamps outside their blocks.
        """
        if self.video_frames_have_timestamps:
            self.refuse_videos(prompts, "remove_image", TIMESTAMP_REASON)
        return image_removed_batch(
            prompts, responses, response_masks, self.position_rows, self.vision_start_id, self.vision_end_id, self.text
        )

    def image_attention_masked_batch(
        self,
        prompts: list[torch.Tensor],
        responses: list[torch.Tensor],
        response_masks: list[torch.Tensor],
        position_ids: list[torch.Tensor],
    ) -> tuple[TensorDict | None, list[int]]:
        """:func:`verl_tor.counterfactual.remove.image_attention_masked_batch` for this model (``position_ids``:
        the per-sample positions of the image-present sequences, as TransferQueue holds them)."""
        if self.video_frames_have_timestamps:
            self.refuse_videos(prompts, "mask_image_attention", TIMESTAMP_REASON)
        vision = (self.image_token_id,) if self.video_token_id is None else (self.image_token_id, self.video_token_id)
        return image_attention_masked_batch(prompts, responses, response_masks, position_ids, vision)


TIMESTAMP_REASON = (
    "its processor writes a text timestamp before each frame's vision block, which removing the blocks would "
    "leave behind"
)


def vision_block_spec(processor, hf_config) -> VisionBlockSpec:
    """The :class:`VisionBlockSpec` of the model behind ``processor`` and ``hf_config``.

    Args:
        processor: the model's processor as veRL's ``hf_processor`` returns it (it binds ``get_rope_index``, which
            decides whether veRL's agent loop stores ``(4, L)`` position ids); None for a text-only model.
        hf_config: the model's HF config (``processor.config`` after ``hf_processor``).

    Raises:
        ValueError: no processor or config, a ``model_type`` outside :data:`FAMILIES` (naming the supported ones),
            vision token ids missing from the config, or ids that the processor contradicts.
    """
    if processor is None or hf_config is None:
        raise ValueError(
            "tor.counterfactual needs a multimodal model with a processor; the model has none "
            f"(supported model types: {', '.join(supported_model_types())})"
        )
    model_type = getattr(hf_config, "model_type", None)
    family = family_of_model_type(model_type)
    if family is None:
        raise ValueError(
            f"tor.counterfactual cannot identify the vision blocks of model_type {model_type!r}; "
            f"supported model types: {', '.join(supported_model_types())}"
        )
    ids: dict[str, int | None] = {}
    for name in ("vision_start_token_id", "vision_end_token_id", "image_token_id", "video_token_id"):
        value = getattr(hf_config, name, None)
        if value is None and name != "video_token_id":
            raise ValueError(f"the {model_type} config has no {name}; ToR cannot find its vision blocks")
        from_processor = getattr(processor, name, None)
        if value is not None and from_processor is not None and int(from_processor) != int(value):
            raise ValueError(
                f"the {model_type} config says {name}={value} but its processor uses {from_processor}: "
                "the tokenizer and the model do not belong together"
            )
        ids[name] = None if value is None else int(value)
    return VisionBlockSpec(
        family=family.name,
        model_type=model_type,
        vision_start_id=ids["vision_start_token_id"],
        vision_end_id=ids["vision_end_token_id"],
        image_token_id=ids["image_token_id"],
        video_token_id=ids["video_token_id"],
        # veRL's agent loop: (4, L) position ids whenever the processor has a rope index, else (L,).
        position_rows=MROPE_POSITION_ROWS if hasattr(processor, "get_rope_index") else None,
        video_frames_have_timestamps=family.video_frames_have_timestamps,
        text=PromptText.of(processor.tokenizer, family.trims_turn_content),
        pixels=PatchGeometry.of(processor.image_processor) if hasattr(processor, "image_processor") else None,
    )
