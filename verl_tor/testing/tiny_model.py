"""Tiny, randomly initialised vision-language models built offline in seconds, for tests and CPU runs.

One builder, one row per family (:data:`FAMILIES`): ``qwen2_5_vl`` (default), ``qwen3_vl``, ``qwen3_vl_moe``,
``qwen3_5`` and ``qwen3_5_moe``. Each has the family's real architecture class, its real processor (image and
video processors with the family's patch size, merge size and normalisation), its special tokens in the real
tokenizer's order (Qwen3.5 has its own vocabulary and special tokens: audio/TTS tokens after ``</think>``), its real
chat template (:mod:`verl_tor.testing.chat_templates`) and its pre-tokenizer; the vocabulary is a small byte-level
BPE: (by default) the 256 byte symbols plus one token per word of ``WORDS`` (so a colour or a digit is a single
token), followed by the special tokens. Everything saved to ``out_dir`` loads with ``AutoTokenizer``,
``AutoProcessor``, ``AutoModelForImageTextToText`` and veRL's ``hf_tokenizer`` / ``hf_processor``; no network is
used.

    python -m verl_tor.testing.tiny_model --out DIR [--family qwen3_vl] [--hidden 64 --layers 2 --seed 0]

The processors keep small images small (``min_pixels`` of one visual token, ``max_pixels`` 224 x 224 by default);
the released checkpoints' defaults are recorded per family (:attr:`TinyFamily.released_pixels`).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from verl_tor.testing.chat_templates import (
    QWEN2_5_VL_CHAT_TEMPLATE,
    QWEN3_5_CHAT_TEMPLATE,
    QWEN3_VL_CHAT_TEMPLATE,
)

# Kept under its old name for existing callers.
QWEN25VL_CHAT_TEMPLATE = QWEN2_5_VL_CHAT_TEMPLATE

# Qwen2.5-VL's special tokens, in Qwen's order (ids follow the ordinary vocabulary here, not 151643+). The tiny
# Qwen2.5-VL keeps exactly these 14 (all special), as it always has.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Added tokens that follow them in Qwen2.5/Qwen3 tokenizers; not special there (``decode(skip_special_tokens=True)``
# keeps them), so neither here.
_QWEN_TOOL_AND_FIM_TOKENS = [
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
]
# Qwen3.5's tokens after </think> (ids 248070-248076 there), special.
_QWEN3_5_AUDIO_TOKENS = [
    "<|audio_start|>",
    "<|audio_end|>",
    "<tts_pad>",
    "<tts_text_bos>",
    "<tts_text_eod>",
    "<tts_text_bos_single>",
    "<|audio_pad|>",
]

# Qwen2's split regex (Qwen2.5-VL, Qwen3-VL) keeps words (with their leading space) and single digits apart;
# Qwen3.5's also keeps combining marks (\p{M}) with their letters and NFC-normalises first.
QWEN2_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN3_5_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)

# Pieces the real Qwen vocabularies hold as one token where text meets across an image block.
NEWLINE_MERGES = ("\n\n", ".\n", ".\n\n", "?\n\n", ":\n")

# Words that become single tokens (with and without a leading space): answers of the synthetic tasks and the
# paper's answer format, so that a tiny model's responses are a few tokens long.
WORDS = [
    "red", "green", "blue", "yellow", "purple", "orange", "black", "white",
    "yes", "no", "What", "colour", "color", "image", "Answer", "with", "one", "word", "the", "is", "of", "How",
    "many", "shapes", "are", "there", "in", "think", "boxed", "answer",
    "<think>", "</think>", "\\boxed{",
]  # fmt: skip


@dataclass(frozen=True)
class TinySize:
    """Size of a tiny model's language model (the vision tower is fixed: depth 2, width 32)."""

    hidden: int
    layers: int
    heads: int


@dataclass(frozen=True)
class TinyFamily:
    """What distinguishes one family's tiny model: tokens, template, processors and the model config."""

    name: str
    title: str
    special_tokens: tuple[tuple[str, bool], ...]
    """``(token, special)`` in the real tokenizer's id order."""
    chat_template: str
    pretokenize_regex: str
    regex_split: bool
    """False passes the pattern to ``tokenizers``' ``Split`` as a plain string, which matches it literally, i.e.
    never: the tiny Qwen2.5-VL has always been built that way and stays so (saved demos and their measured curves
    depend on its vocabulary); the other families split like the real tokenizers."""
    boundary_merges: tuple[str, ...]
    """Pieces trained as single tokens besides the words: newline runs after punctuation, which real Qwen
    vocabularies hold as one token (``.ĊĊ``), so that text meeting across a removed image block tokenizes as it
    would with the real tokenizer (see ``tests/test_model_families.py``)."""
    nfc_normalize: bool
    processor_class: str
    video_processor_class: str
    patch_size: int
    image_mean: tuple[float, float, float] | None
    """None: the image processor's default (OpenAI CLIP's for Qwen2-VL's processor)."""
    released_pixels: tuple[int, int]
    """(min, max) pixels of the released checkpoints' image processor (documentation; tiny models use less)."""
    eos_tokens: tuple[str, ...]
    """``generation_config.eos_token_id`` of the released instruct checkpoints (first: the tokenizer's eos)."""
    default_size: TinySize
    config: Callable[[TinySize, dict[str, int], int], object] = field(repr=False)
    """``(size, special token ids, vocabulary size) -> transformers config``."""


def _scaled_mrope_section(rotary_half: int, released: Sequence[int]) -> list[int]:
    """The released M-RoPE (temporal, height, width) split scaled to ``rotary_half`` frequencies (sum kept)."""
    total = sum(released)
    section = [max(1, round(rotary_half * part / total)) for part in released[1:]]
    return [rotary_half - sum(section), *section]


def _text_ids(ids: dict[str, int]) -> dict[str, int]:
    return {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def _vision_ids(ids: dict[str, int]) -> dict[str, int]:
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


# Vision towers: the families' layout at depth 2 and width 32 (patch 14 + window attention for Qwen2.5-VL).
_QWEN3_VISION = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "num_position_embeddings": 64,
}


def _qwen2_5_vl_config(size: TinySize, ids: dict[str, int], vocab_size: int):
    from transformers import Qwen2_5_VLConfig

    head_dim = size.hidden // size.heads
    # M-RoPE splits the rotary half-dimension over (temporal, height, width) like Qwen's [16, 24, 24] of 64.
    quarter = head_dim // 2 // 4
    mrope_section = [quarter, (head_dim // 2 - quarter) // 2, head_dim // 2 - quarter - (head_dim // 2 - quarter) // 2]
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": size.hidden,
            "intermediate_size": 2 * size.hidden,
            "num_hidden_layers": size.layers,
            "num_attention_heads": size.heads,
            "num_key_value_heads": max(1, size.heads // 2),
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope_section},
            **_text_ids(ids),
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": size.hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        **_vision_ids(ids),
        **_text_ids(ids),
        tie_word_embeddings=False,
    )


def _decoder_text(size: TinySize, ids: dict[str, int], vocab_size: int) -> dict:
    """The text config keys the Qwen3 families share (sizes, special ids); each adds its attention and rope."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": size.hidden,
        "intermediate_size": 2 * size.hidden,
        "num_hidden_layers": size.layers,
        "num_attention_heads": size.heads,
        "num_key_value_heads": max(1, size.heads // 2),
        "head_dim": size.hidden // size.heads,
        "max_position_embeddings": 4096,
        **_text_ids(ids),
        "tie_word_embeddings": False,
    }


def _qwen3_vl_text(size: TinySize, ids: dict[str, int], vocab_size: int) -> dict:
    text = _decoder_text(size, ids, vocab_size)
    # Interleaved M-RoPE ([24, 20, 20] of 64 in the released models).
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 5000000.0,
        "mrope_section": _scaled_mrope_section(text["head_dim"] // 2, [24, 20, 20]),
        "mrope_interleaved": True,
    }
    return text


def _qwen3_vl_config(size: TinySize, ids: dict[str, int], vocab_size: int, moe: bool = False):
    from transformers import Qwen3VLConfig, Qwen3VLMoeConfig

    text = _qwen3_vl_text(size, ids, vocab_size)
    if moe:  # four tiny experts, two per token, in every layer
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=size.hidden // 2, decoder_sparse_step=1)
        text.pop("head_dim")
    # DeepStack: features of both vision blocks are added to the first two decoder layers' hidden states.
    vision = {**_QWEN3_VISION, "out_hidden_size": size.hidden, "deepstack_visual_indexes": [0, 1]}
    config_cls = Qwen3VLMoeConfig if moe else Qwen3VLConfig
    return config_cls(text_config=text, vision_config=vision, **_vision_ids(ids), tie_word_embeddings=False)


def _qwen3_5_config(size: TinySize, ids: dict[str, int], vocab_size: int, moe: bool = False):
    from transformers import Qwen3_5Config, Qwen3_5MoeConfig

    rotary_fraction = 0.25  # the released models rotate a quarter of each head
    text = _decoder_text(size, ids, vocab_size)
    text.update(
        {
            # Three linear-attention (gated delta net) layers, then one full-attention layer, as released.
            "layer_types": ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(size.layers)],
            "linear_conv_kernel_dim": 4,
            "linear_num_key_heads": 2,
            "linear_num_value_heads": 4,
            "linear_key_head_dim": 16,
            "linear_value_head_dim": 16,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000000.0,
                "partial_rotary_factor": rotary_fraction,
                "mrope_section": _scaled_mrope_section(int(text["head_dim"] * rotary_fraction) // 2, [11, 11, 10]),
                "mrope_interleaved": True,
            },
        }
    )
    if moe:
        text.pop("intermediate_size")
        text.update(
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=size.hidden // 2,
            shared_expert_intermediate_size=size.hidden // 2,
        )
    vision = {**_QWEN3_VISION, "out_hidden_size": size.hidden}  # no DeepStack in Qwen3.5
    config_cls = Qwen3_5MoeConfig if moe else Qwen3_5Config
    return config_cls(text_config=text, vision_config=vision, **_vision_ids(ids), tie_word_embeddings=False)


_QWEN2_5_VL_SPECIAL = tuple((token, True) for token in SPECIAL_TOKENS)
_QWEN3_VL_SPECIAL = _QWEN2_5_VL_SPECIAL + tuple((token, False) for token in _QWEN_TOOL_AND_FIM_TOKENS)
_QWEN3_5_SPECIAL = _QWEN3_VL_SPECIAL + tuple((token, True) for token in _QWEN3_5_AUDIO_TOKENS)
_HALF = (0.5, 0.5, 0.5)
# Released Qwen3-VL / Qwen3.5 image processors: shortest_edge 65536 (256 x 256), longest_edge 16777216 (4096 x 4096).
_QWEN3_PIXELS = (65536, 16777216)


def _qwen3_vl_family(name: str, title: str, moe: bool) -> TinyFamily:
    return TinyFamily(
        name=name,
        title=title,
        special_tokens=_QWEN3_VL_SPECIAL,
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
        pretokenize_regex=QWEN2_PRETOKENIZE_REGEX,
        regex_split=True,
        boundary_merges=NEWLINE_MERGES,
        nfc_normalize=False,
        processor_class="Qwen3VLProcessor",
        video_processor_class="Qwen3VLVideoProcessor",
        patch_size=16,
        image_mean=_HALF,
        released_pixels=_QWEN3_PIXELS,
        eos_tokens=("<|im_end|>", "<|endoftext|>"),
        default_size=TinySize(hidden=64, layers=2, heads=4),
        config=lambda size, ids, vocab: _qwen3_vl_config(size, ids, vocab, moe=moe),
    )


def _qwen3_5_family(name: str, title: str, moe: bool) -> TinyFamily:
    return TinyFamily(
        name=name,
        title=title,
        special_tokens=_QWEN3_5_SPECIAL,
        chat_template=QWEN3_5_CHAT_TEMPLATE,
        pretokenize_regex=QWEN3_5_PRETOKENIZE_REGEX,
        regex_split=True,
        boundary_merges=NEWLINE_MERGES,
        nfc_normalize=True,
        processor_class="Qwen3VLProcessor",  # Qwen3.5 ships Qwen3-VL's processor
        video_processor_class="Qwen3VLVideoProcessor",
        patch_size=16,
        image_mean=_HALF,
        released_pixels=_QWEN3_PIXELS,
        eos_tokens=("<|im_end|>", "<|endoftext|>"),
        default_size=TinySize(hidden=64, layers=4, heads=2),
        config=lambda size, ids, vocab: _qwen3_5_config(size, ids, vocab, moe=moe),
    )


FAMILIES: dict[str, TinyFamily] = {
    family.name: family
    for family in (
        TinyFamily(
            name="qwen2_5_vl",
            title="Qwen2.5-VL",
            special_tokens=_QWEN2_5_VL_SPECIAL,
            chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
            pretokenize_regex=QWEN2_PRETOKENIZE_REGEX,
            regex_split=False,
            boundary_merges=(),
            nfc_normalize=False,
            processor_class="Qwen2_5_VLProcessor",
            video_processor_class="Qwen2VLVideoProcessor",
            patch_size=14,
            image_mean=None,
            released_pixels=(3136, 12845056),
            eos_tokens=("<|im_end|>",),
            default_size=TinySize(hidden=64, layers=2, heads=4),
            config=_qwen2_5_vl_config,
        ),
        _qwen3_vl_family("qwen3_vl", "Qwen3-VL", moe=False),
        _qwen3_vl_family("qwen3_vl_moe", "Qwen3-VL-MoE", moe=True),
        _qwen3_5_family("qwen3_5", "Qwen3.5", moe=False),
        _qwen3_5_family("qwen3_5_moe", "Qwen3.5-MoE", moe=True),
    )
}
DEFAULT_FAMILY = "qwen2_5_vl"


def family_of(name: str) -> TinyFamily:
    """The row of ``FAMILIES`` called ``name`` (ValueError listing the known ones otherwise)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown tiny model family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def build_tokenizer(
    words: Sequence[str] = WORDS,
    alphabet: str | None = None,
    family: str = DEFAULT_FAMILY,
    pieces: Sequence[str] | None = None,
):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with the family's special tokens and chat template.

    Args:
        words: words that become single tokens (with and without a leading space).
        alphabet: None keeps all 256 byte symbols; a text keeps only the byte symbols it and ``words`` use (a much
            smaller vocabulary for a task whose text is fixed; other characters are then dropped when encoding).
        family: a key of :data:`FAMILIES`.
        pieces: instead of training on ``words``, a hand-written BPE: the 256 byte symbols plus each of these texts
            as one token, merged left to right in the order given (merge ranks), split with the family's real
            pre-tokenizer regex in every family (the released Qwen2.5-VL tokenizer's too). For tests that need the
            merges of the released vocabularies (``"\n\n"``, ``".\n\n"``, ``" word"``) without downloading them.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    spec = family_of(family)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend = Tokenizer(models.BPE(*_handwritten_bpe(pieces, byte_level)) if pieces is not None else models.BPE())
    if spec.nfc_normalize:
        backend.normalizer = normalizers.NFC()
    regex_split = spec.regex_split or pieces is not None
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(spec.pretokenize_regex) if regex_split else spec.pretokenize_regex, behavior="isolated"
            ),
            byte_level,
        ]
    )
    if pieces is None:
        # Training on the word list (each with and without a leading space) until no pair repeats makes every
        # word one token; BPE training is deterministic for a fixed corpus.
        if alphabet is None:
            initial_alphabet = pre_tokenizers.ByteLevel.alphabet()
        else:
            initial_alphabet = sorted({char for piece, _ in byte_level.pre_tokenize_str(alphabet) for char in piece})
        trainer = trainers.BpeTrainer(
            vocab_size=100_000, min_frequency=1, initial_alphabet=initial_alphabet, show_progress=False
        )
        corpus = [w for word in words for w in (word, " " + word)] + list(spec.boundary_merges)
        backend.train_from_iterator(corpus, trainer=trainer)
    backend.decoder = decoders.ByteLevel()
    # One at a time, so that the ids follow the real tokenizer's order.
    for token, special in spec.special_tokens:
        if special:
            backend.add_special_tokens([AddedToken(token, special=True, normalized=False)])
        else:
            backend.add_tokens([AddedToken(token, special=False, normalized=False)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = spec.chat_template
    return tokenizer


def _handwritten_bpe(pieces: Sequence[str], byte_level) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges of a BPE over the 256 byte symbols with each piece one token (merged left to right)."""
    from tokenizers import pre_tokenizers

    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    merges: list[tuple[str, str]] = []
    for piece in pieces:
        symbols = "".join(part for part, _ in byte_level.pre_tokenize_str(piece))
        merged = symbols[0]
        for symbol in symbols[1:]:
            if merged + symbol not in vocab:
                merges.append((merged, symbol))
                vocab[merged + symbol] = len(vocab)
            merged += symbol
    return vocab, merges


def build_processor(
    tokenizer, min_pixels: int | None = None, max_pixels: int = 224 * 224, family: str = DEFAULT_FAMILY
):
    """The family's real processor around ``tokenizer``.

    Args:
        min_pixels: smallest image area kept; None: one visual token (``(patch_size * 2) ** 2``).
        max_pixels: largest image area kept.
    """
    import transformers
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    spec = family_of(family)
    merged_patch = spec.patch_size * 2  # spatial merge 2: one visual token per merged_patch x merged_patch pixels
    pixels = {"min_pixels": merged_patch**2 if min_pixels is None else min_pixels, "max_pixels": max_pixels}
    vision = {"patch_size": spec.patch_size, "merge_size": 2, "temporal_patch_size": 2}
    if spec.image_mean is not None:
        vision.update(image_mean=list(spec.image_mean), image_std=list(spec.image_mean))
    processor_cls = getattr(transformers, spec.processor_class)
    video_processor_cls = getattr(transformers, spec.video_processor_class)
    return processor_cls(
        image_processor=Qwen2VLImageProcessor(**pixels, **vision),
        tokenizer=tokenizer,
        video_processor=video_processor_cls(**pixels, **vision),
        chat_template=spec.chat_template,
    )


def build_model(
    tokenizer,
    hidden: int | None = None,
    layers: int | None = None,
    heads: int | None = None,
    seed: int = 0,
    family: str = DEFAULT_FAMILY,
):
    """A random model of the family's real architecture (``AutoModelForImageTextToText``) in float32.

    ``hidden``, ``layers``, ``heads``: None takes the family's default size.
    """
    from transformers import AutoModelForImageTextToText

    spec = family_of(family)
    default = spec.default_size
    size = TinySize(hidden or default.hidden, layers or default.layers, heads or default.heads)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token, _ in spec.special_tokens}
    config = spec.config(size, ids, len(tokenizer))
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config).to(torch.float32)
    eos = [ids[token] for token in spec.eos_tokens]
    model.generation_config.eos_token_id = eos[0] if len(eos) == 1 else eos
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def build_tiny_model(
    out_dir: str,
    family: str = DEFAULT_FAMILY,
    hidden: int | None = None,
    layers: int | None = None,
    heads: int | None = None,
    seed: int = 0,
    min_pixels: int | None = None,
    max_pixels: int = 224 * 224,
    words: Sequence[str] = WORDS,
    alphabet: str | None = None,
    pieces: Sequence[str] | None = None,
) -> str:
    """Build and save tokenizer, processor and model of ``family`` to ``out_dir``; returns ``out_dir``.

    ``words``, ``alphabet`` and ``pieces`` shape the vocabulary (:func:`build_tokenizer`); None sizes take the
    family's default.
    """
    os.makedirs(out_dir, exist_ok=True)
    tokenizer = build_tokenizer(words, alphabet, family=family, pieces=pieces)
    processor = build_processor(tokenizer, min_pixels=min_pixels, max_pixels=max_pixels, family=family)
    model = build_model(tokenizer, hidden=hidden, layers=layers, heads=heads, seed=seed, family=family)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    text = model.config.get_text_config()
    with open(os.path.join(out_dir, "tiny_model.json"), "w") as f:
        settings = {
            "family": family,
            "hidden": text.hidden_size,
            "layers": text.num_hidden_layers,
            "heads": text.num_attention_heads,
            "seed": seed,
            "min_pixels": processor.image_processor.size["shortest_edge"],
            "max_pixels": max_pixels,
        }
        json.dump({**settings, "words": list(words), "alphabet": alphabet, "vocab_size": len(tokenizer)}, f)
    return out_dir


def build_tiny_qwen25vl(
    out_dir: str,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
    max_pixels: int = 224 * 224,
    words: Sequence[str] = WORDS,
    alphabet: str | None = None,
) -> str:
    """:func:`build_tiny_model` of the Qwen2.5-VL family (the project's default test model)."""
    return build_tiny_model(
        out_dir,
        "qwen2_5_vl",
        hidden=hidden,
        layers=layers,
        heads=heads,
        seed=seed,
        max_pixels=max_pixels,
        words=words,
        alphabet=alphabet,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.testing.tiny_model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--family", default=DEFAULT_FAMILY, choices=sorted(FAMILIES), help="model family")
    parser.add_argument("--hidden", type=int, help="hidden size (default: the family's, 64)")
    parser.add_argument("--layers", type=int, help="decoder layers (default: the family's, 2; Qwen3.5: 4)")
    parser.add_argument("--heads", type=int, help="attention heads (default: the family's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-pixels", type=int, help="smallest image area the processor keeps (default: 1 token)")
    parser.add_argument("--max-pixels", type=int, default=224 * 224, help="largest image area the processor keeps")
    parser.add_argument("--words", help="comma-separated single-token words (default: the built-in list)")
    parser.add_argument("--alphabet", help="keep only the byte symbols of this text (default: all 256)")
    args = parser.parse_args()
    start = time.perf_counter()
    build_tiny_model(
        args.out,
        args.family,
        hidden=args.hidden,
        layers=args.layers,
        heads=args.heads,
        seed=args.seed,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        words=args.words.split(",") if args.words else WORDS,
        alphabet=args.alphabet,
    )
    title = family_of(args.family).title
    print(f"tiny {title} written to {args.out} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
