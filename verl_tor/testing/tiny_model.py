"""A tiny, randomly initialised Qwen2.5-VL built offline in seconds, for tests and CPU runs.

It has the real architecture (``Qwen2_5_VLForConditionalGeneration``), the real processor
(``Qwen2_5_VLProcessor`` with Qwen2-VL's image and video processors), Qwen2.5-VL's special tokens and chat
template, and a small byte-level BPE tokenizer whose vocabulary is (by default) the 256 byte symbols plus one token
per word of ``WORDS`` (so a colour or a digit is a single token). Everything saved to ``out_dir`` loads with
``AutoTokenizer``, ``AutoProcessor``, ``AutoModelForImageTextToText`` and veRL's ``hf_tokenizer`` /
``hf_processor``; no network is used.

    python -m verl_tor.testing.tiny_model --out DIR [--hidden 64 --layers 2 --seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence

import torch

# The chat template shipped with Qwen/Qwen2.5-VL-7B-Instruct.
QWEN25VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5-VL's special tokens, in Qwen's order (ids follow the ordinary vocabulary here, not 151643+).
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

# Words that become single tokens (with and without a leading space): answers of the synthetic tasks and the
# paper's answer format, so that a tiny model's responses are a few tokens long.
WORDS = [
    "red", "green", "blue", "yellow", "purple", "orange", "black", "white",
    "yes", "no", "What", "colour", "color", "image", "Answer", "with", "one", "word", "the", "is", "of", "How",
    "many", "shapes", "are", "there", "in", "think", "boxed", "answer",
    "<think>", "</think>", "\\boxed{",
]  # fmt: skip


def build_tokenizer(words: Sequence[str] = WORDS, alphabet: str | None = None):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with Qwen2.5-VL's special tokens and chat template.

    Args:
        words: words that become single tokens (with and without a leading space).
        alphabet: None keeps all 256 byte symbols; a text keeps only the byte symbols it and ``words`` use (a much
            smaller vocabulary for a task whose text is fixed; other characters are then dropped when encoding).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    # Qwen's split regex keeps words (with their leading space) and single digits apart, as Qwen2 does.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
                behavior="isolated",
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    # Training on the word list (each with and without a leading space) until no pair repeats makes every
    # word one token; BPE training is deterministic for a fixed corpus.
    if alphabet is None:
        initial_alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        initial_alphabet = sorted({char for piece, _ in byte_level.pre_tokenize_str(alphabet) for char in piece})
    trainer = trainers.BpeTrainer(
        vocab_size=100_000, min_frequency=1, initial_alphabet=initial_alphabet, show_progress=False
    )
    backend.train_from_iterator([w for word in words for w in (word, " " + word)], trainer=trainer)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = QWEN25VL_CHAT_TEMPLATE
    return tokenizer


def build_processor(tokenizer, min_pixels: int = 28 * 28, max_pixels: int = 224 * 224):
    """The real ``Qwen2_5_VLProcessor`` around ``tokenizer`` (patch 14, merge 2: one token per 28x28 pixels)."""
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    pixels = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixels),
        chat_template=QWEN25VL_CHAT_TEMPLATE,
    )


def build_model(tokenizer, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0):
    """A random ``Qwen2_5_VLForConditionalGeneration`` sized for CPU work, in float32."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    head_dim = hidden // heads
    # M-RoPE splits the rotary half-dimension over (temporal, height, width) like Qwen's [16, 24, 24] of 64.
    quarter = head_dim // 2 // 4
    mrope_section = [quarter, (head_dim // 2 - quarter) // 2, head_dim // 2 - quarter - (head_dim // 2 - quarter) // 2]
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": max(1, heads // 2),
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope_section},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


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
    """Build and save tokenizer, processor and model to ``out_dir``; returns ``out_dir``.

    ``words`` and ``alphabet`` shape the vocabulary (:func:`build_tokenizer`).
    """
    os.makedirs(out_dir, exist_ok=True)
    tokenizer = build_tokenizer(words, alphabet)
    processor = build_processor(tokenizer, max_pixels=max_pixels)
    model = build_model(tokenizer, hidden=hidden, layers=layers, heads=heads, seed=seed)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "tiny_model.json"), "w") as f:
        settings = {"hidden": hidden, "layers": layers, "heads": heads, "seed": seed, "max_pixels": max_pixels}
        json.dump({**settings, "words": list(words), "alphabet": alphabet, "vocab_size": len(tokenizer)}, f)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-pixels", type=int, default=224 * 224, help="largest image area the processor keeps")
    parser.add_argument("--words", help="comma-separated single-token words (default: the built-in list)")
    parser.add_argument("--alphabet", help="keep only the byte symbols of this text (default: all 256)")
    args = parser.parse_args()
    start = time.perf_counter()
    build_tiny_qwen25vl(
        args.out,
        hidden=args.hidden,
        layers=args.layers,
        heads=args.heads,
        seed=args.seed,
        max_pixels=args.max_pixels,
        words=args.words.split(",") if args.words else WORDS,
        alphabet=args.alphabet,
    )
    print(f"tiny Qwen2.5-VL written to {args.out} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
