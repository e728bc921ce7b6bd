"""The tiny model of every family, and what "image removed" means for each, against the family's own processor.

Nothing here runs a model forward: the prompt and position ids ToR builds without the image are compared with the
conversation rendered from scratch without it (the family's chat template and processor) and with the position ids
veRL's agent loop computes for that rendering (the model's own ``get_rope_index``). The engine-level checks are in
``test_counterfactual.py`` and ``test_remove_padding_path.py``.
"""

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from verl_tor.counterfactual.families import FAMILIES as MODEL_FAMILIES
from verl_tor.counterfactual.families import supported_model_types, vision_block_spec
from verl_tor.nested import as_list
from verl_tor.testing.rollout_rows import agent_loop_row, image_removed_rows
from verl_tor.testing.tiny_model import FAMILIES

ALL_FAMILIES = tuple(FAMILIES)
# The released checkpoints' processor and model classes (transformers 5), by tiny family.
EXPECTED_CLASSES = {
    "qwen2_5_vl": ("Qwen2_5_VLProcessor", "Qwen2_5_VLForConditionalGeneration"),
    "qwen3_vl": ("Qwen3VLProcessor", "Qwen3VLForConditionalGeneration"),
    "qwen3_vl_moe": ("Qwen3VLProcessor", "Qwen3VLMoeForConditionalGeneration"),
    "qwen3_5": ("Qwen3VLProcessor", "Qwen3_5ForConditionalGeneration"),
    "qwen3_5_moe": ("Qwen3VLProcessor", "Qwen3_5MoeForConditionalGeneration"),
}
QUESTION = "What colour is the image? Answer with one word."


def _image(rgb, size=56):
    return Image.new("RGB", (size, size), rgb)


# ---------------------------------------------------------------------------------------------------------------
# The builder.
# ---------------------------------------------------------------------------------------------------------------


def test_every_model_family_has_a_tiny_model():
    covered = {model_type for family in MODEL_FAMILIES for model_type in family.model_types}
    assert covered - {"qwen2_vl"} == set(FAMILIES)  # Qwen2-VL shares Qwen2.5-VL's processor and veRL code


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_tiny_model_loads_like_a_released_checkpoint(family, tiny_model_dirs, processors):
    from transformers import AutoModelForImageTextToText
    from verl.utils import hf_tokenizer

    spec = FAMILIES[family]
    model_dir = tiny_model_dirs[family]
    tokenizer, processor = hf_tokenizer(model_dir), processors[family]
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    processor_class, model_class = EXPECTED_CLASSES[family]
    assert (type(processor).__name__, type(model).__name__) == (processor_class, model_class)
    assert model.config.model_type == family
    # veRL binds the model's rope index to the processor: its agent loop then stores (4, L) position ids.
    assert hasattr(processor, "get_rope_index")
    # The family's special tokens, in the released tokenizer's order, special where the released one says so.
    ids = [tokenizer.convert_tokens_to_ids(token) for token, _ in spec.special_tokens]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and tokenizer.unk_token_id not in ids
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    kept = tokenizer.decode(ids, skip_special_tokens=True)
    assert all((token in kept) != is_special for token, is_special in spec.special_tokens)
    # Vision: patch 14 (Qwen2.5-VL) or 16, merge 2, temporal patch 2, in the processor and in the model.
    vision = model.config.vision_config
    image_processor = processor.image_processor
    assert image_processor.patch_size == vision.patch_size == spec.patch_size
    assert image_processor.merge_size == vision.spatial_merge_size == 2
    assert image_processor.temporal_patch_size == vision.temporal_patch_size == 2
    assert processor.chat_template == tokenizer.chat_template == spec.chat_template
    # One visual token per (2 * patch)² pixels.
    merged = 2 * spec.patch_size
    inputs = processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[_image((9, 9, 9), 2 * merged)])
    assert inputs["input_ids"][0].count(processor.image_token_id) == 4


def test_qwen3_5_is_a_hybrid_of_linear_and_full_attention(tiny_model_dirs):
    from transformers import AutoConfig

    text = AutoConfig.from_pretrained(tiny_model_dirs["qwen3_5"]).text_config
    assert text.layer_types == ["linear_attention"] * 3 + ["full_attention"]


def test_qwen3_vl_chat_template_is_the_released_one():
    from verl_tor.testing.chat_templates import QWEN3_VL_CHAT_TEMPLATE, QWEN3_VL_CHAT_TEMPLATE_SHA256

    assert hashlib.sha256(QWEN3_VL_CHAT_TEMPLATE.encode()).hexdigest() == QWEN3_VL_CHAT_TEMPLATE_SHA256


def test_chat_templates_render_each_family_differently(processors):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    rendered = {
        family: processors[family].apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        for family in ("qwen2_5_vl", "qwen3_vl", "qwen3_5")
    }
    block = "<|vision_start|><|image_pad|><|vision_end|>"
    turn = f"<|im_start|>user\n{block}Hi<|im_end|>\n<|im_start|>assistant\n"
    assert rendered["qwen2_5_vl"] == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + turn
    assert rendered["qwen3_vl"] == turn
    assert rendered["qwen3_5"] == turn + "<think>\n"


# ---------------------------------------------------------------------------------------------------------------
# The family table: which models, which ids.
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_vision_block_spec_reads_the_ids_of_the_model(family, processors):
    processor = processors[family]
    spec = vision_block_spec(processor, processor.config)
    tokenizer = processor.tokenizer
    expected = {
        "vision_start_id": "<|vision_start|>",
        "vision_end_id": "<|vision_end|>",
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
    }
    assert {name: getattr(spec, name) for name in expected} == {
        name: tokenizer.convert_tokens_to_ids(token) for name, token in expected.items()
    }
    assert spec.model_type == family and spec.position_rows == 4
    assert spec.video_frames_have_timestamps == (family != "qwen2_5_vl")


def test_vision_block_spec_refuses_models_it_cannot_handle(processors):
    from transformers import Glm4vConfig

    with pytest.raises(ValueError, match=r"'glm4v'.*qwen2_5_vl.*qwen3_vl.*qwen3_5"):
        vision_block_spec(SimpleNamespace(), Glm4vConfig())
    kimi = SimpleNamespace(model_type="kimi_vl", vision_start_token_id=1, vision_end_token_id=2)
    with pytest.raises(ValueError, match="'kimi_vl'"):
        vision_block_spec(SimpleNamespace(), kimi)
    with pytest.raises(ValueError, match="needs a multimodal model"):
        vision_block_spec(None, None)
    processor = processors["qwen3_vl"]
    config = processor.config
    with pytest.raises(ValueError, match="no vision_start_token_id"):
        vision_block_spec(processor, SimpleNamespace(model_type="qwen3_vl", image_token_id=config.image_token_id))
    # A tokenizer whose ids disagree with the model's (a mismatched checkpoint) would delete the wrong tokens.
    wrong = SimpleNamespace(**{**config.to_dict(), "vision_start_token_id": config.vision_start_token_id + 1})
    with pytest.raises(ValueError, match="vision_start_token_id"):
        vision_block_spec(processor, wrong)
    assert {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"} == set(
        supported_model_types()
    )


def test_position_rows_follow_verl_agent_loop(processors):
    """(4, L) positions exactly when the processor has a rope index, which is veRL's agent-loop rule."""
    processor = processors["qwen3_5"]
    without_rope_index = SimpleNamespace(image_token_id=processor.image_token_id, tokenizer=processor.tokenizer)
    assert vision_block_spec(without_rope_index, processor.config).position_rows is None


# ---------------------------------------------------------------------------------------------------------------
# "Image removed" against the family's processor.
# ---------------------------------------------------------------------------------------------------------------

LAYOUTS = {
    "one image": ([{"type": "image"}, {"type": "text", "text": QUESTION}], 1),
    "two images": ([{"type": "image"}, {"type": "image"}, {"type": "text", "text": QUESTION}], 2),
    "image after a line": (
        [{"type": "text", "text": "Look.\n"}, {"type": "image"}, {"type": "text", "text": QUESTION}],
        1,
    ),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_image_removed_prompt_is_the_conversation_rendered_without_images(family, layout, processors):
    processor = processors[family]
    content, n_images = LAYOUTS[layout]
    images = [_image((200, 30, 30)), _image((20, 40, 220), 84)][:n_images]
    system = [{"role": "system", "content": "Answer briefly."}]
    response = processor.tokenizer.encode(" red") + [processor.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    with_images = system + [{"role": "user", "content": content}]
    without = system + [{"role": "user", "content": [part for part in content if part["type"] == "text"]}]
    rows = [
        agent_loop_row(processor, with_images, images, response),
        agent_loop_row(processor, system + [{"role": "user", "content": "How many?"}], None, response),
    ]
    removed, kept = image_removed_rows(processor, rows)
    assert kept == [0]  # the text-only sample is not part of the pass
    scratch = agent_loop_row(processor, without, None, response)
    assert torch.equal(as_list(removed["input_ids"])[0], scratch["input_ids"])
    assert torch.equal(as_list(removed["prompts"])[0], scratch["prompts"])
    # Every row counts up by one per token without images, interleaved M-RoPE included...
    assert torch.equal(as_list(removed["position_ids"])[0], scratch["position_ids"])
    assert torch.equal(scratch["position_ids"], torch.arange(len(scratch["input_ids"])).expand(4, -1))
    # ...while with images the M-RoPE rows do not (the removed positions are not a subset of the original ones).
    assert not torch.equal(rows[0]["position_ids"][1:], torch.arange(len(rows[0]["input_ids"])).expand(3, -1))


# A hand-written BPE with the merges of the released Qwen vocabularies that text meeting across a deleted block
# exercises (newline runs, newlines after punctuation, words with their leading space), split with the real regex.
RELEASED_MERGES = (
    ".\n", ".\n\n", "?\n", "?\n\n", ":\n", ":\n\n", "\n\n", "\n\n\n", "  ",
    "user", "system", "assistant", "think", "Answer", " briefly", "What", " colour", " is", " the", " image",
    "Look", " at", " figure", "First", "Second", " Which", " larger", " Compare", " two", " red", " this",
)  # fmt: skip
# Prompts as data_prep writes them and veRL's RLHFDataset turns them into content lists (split at "<image>").
DATASET_PROMPTS = {
    "image, newline, question (data_prep before the fix)": "<image>\nWhat colour is the image?",
    "image, question (data_prep now)": "<image>What colour is the image?",
    "image in the middle": "Look at the figure.\n<image>\nWhat colour is the image?",
    "two images, newline": "<image><image>\nCompare the two.",
    "two images in the text": "First:\n<image>\n\nSecond:\n<image>\nWhich is larger?",
    "image at the end": "What colour is this?\n<image>",
}
# The families in which deleting the blocks alone leaves other tokens: newlines that merge across a block, and
# Qwen3.5's trim of the turn (its "\n" after a leading image, its "\n" before a final one).
DELETION_ALONE_DIFFERS = {
    "image, newline, question (data_prep before the fix)": {"qwen2_5_vl", "qwen3_vl", "qwen3_5"},
    "image, question (data_prep now)": set(),
    "image in the middle": {"qwen2_5_vl", "qwen3_vl", "qwen3_5"},
    "two images, newline": {"qwen2_5_vl", "qwen3_vl", "qwen3_5"},
    "two images in the text": {"qwen2_5_vl", "qwen3_vl", "qwen3_5"},
    "image at the end": {"qwen3_5"},
}


@pytest.fixture(scope="module")
def released_merges_processors(tmp_path_factory):
    """veRL's ``hf_processor`` of a tiny model per family whose tokenizer has :data:`RELEASED_MERGES`."""
    from verl.utils import hf_processor

    from verl_tor.testing.tiny_model import build_tiny_model

    class Processors(dict):
        def __missing__(self, family):
            out = build_tiny_model(str(tmp_path_factory.mktemp(f"merges_{family}")), family, pieces=RELEASED_MERGES)
            self[family] = hf_processor(out)
            return self[family]

    return Processors()


def _dataset_messages(processor, content: str, images: list) -> list[dict]:
    """veRL's own ``RLHFDataset._build_messages`` of a one-turn prompt (with a system turn)."""
    from verl.utils.dataset.rl_dataset import RLHFDataset

    dataset = SimpleNamespace(image_key="images", video_key="videos", audio_key="audios", processor=processor)
    example = {
        "prompt": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": content}],
        "images": images,
    }
    return RLHFDataset._build_messages(dataset, example, "prompt")


@pytest.mark.parametrize("prompt", DATASET_PROMPTS)
@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "qwen3_5"])
def test_image_removed_prompt_is_the_tokenized_image_free_conversation(family, prompt, released_merges_processors):
    """With the released vocabularies' merges, deleting the blocks alone leaves other tokens than the image-free
    conversation (``"\n"`` + ``"\n"`` for ``"\n\n"``, and Qwen3.5 trims each turn); the pass re-tokenizes."""
    processor = released_merges_processors[family]
    content = DATASET_PROMPTS[prompt]
    images = [_image((200, 30, 30)), _image((20, 40, 220), 84)][: content.count("<image>")]
    messages = _dataset_messages(processor, content, images)
    tokenizer = processor.tokenizer
    response = tokenizer.encode(" red") + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    row = agent_loop_row(
        processor, messages, [part["image"] for m in messages for part in _parts(m, "image")], response
    )
    without = [{**m, "content": _parts(m, "text")} if isinstance(m["content"], list) else m for m in messages]
    scratch = agent_loop_row(processor, without, None, response)
    removed, kept = image_removed_rows(processor, [row])
    assert kept == [0]
    got = as_list(removed["prompts"])[0]
    assert tokenizer.convert_ids_to_tokens(got) == tokenizer.convert_ids_to_tokens(scratch["prompts"])
    assert torch.equal(as_list(removed["input_ids"])[0], scratch["input_ids"])
    assert torch.equal(as_list(removed["position_ids"])[0], scratch["position_ids"])
    # Where the text around a block merges or a turn is trimmed, deleting alone does not give these tokens.
    spec = vision_block_spec(processor, processor.config)
    deleted_only = row["prompts"][~_block_mask(row["prompts"], spec)]
    assert (deleted_only.tolist() != scratch["prompts"].tolist()) == (family in DELETION_ALONE_DIFFERS[prompt])


def _parts(message: dict, kind: str) -> list[dict]:
    return [part for part in message["content"] if part["type"] == kind] if isinstance(message["content"], list) else []


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5"])
def test_videos_with_frame_timestamps_are_refused(family, processors):
    """Qwen3-VL's processor writes ``<t seconds>`` before each frame's block: deleting blocks would leave it."""
    from transformers.video_utils import VideoMetadata

    processor = processors[family]
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    metadata = VideoMetadata(total_num_frames=4, fps=2.0, frames_indices=[0, 1, 2, 3])
    video = np.zeros((4, 64, 64, 3), dtype=np.uint8)
    inputs = processor(text=[text], videos=[video], video_metadata=[metadata], do_sample_frames=False)
    prompt = torch.tensor(inputs["input_ids"][0])
    spec = vision_block_spec(processor, processor.config)
    outside_blocks = processor.tokenizer.decode(prompt[~_block_mask(prompt, spec)])
    assert "seconds>" in outside_blocks  # what deleting the blocks would leave behind
    with pytest.raises(ValueError, match="does not support videos"):
        spec.image_removed_batch([prompt], [torch.tensor([1])], [torch.ones(1)])


def test_qwen2_5_vl_video_blocks_are_deleted_whole(processors):
    processor = processors["qwen2_5_vl"]
    spec = vision_block_spec(processor, processor.config)
    pads = [spec.video_token_id] * 3
    prompt = torch.tensor([5, spec.vision_start_id, *pads, spec.vision_end_id, 6])
    batch, rows = spec.image_removed_batch([prompt], [torch.tensor([7])], [torch.ones(1)])
    assert rows == [0] and as_list(batch["prompts"])[0].tolist() == [5, 6]


def _block_mask(prompt: torch.Tensor, spec) -> torch.Tensor:
    from verl_tor.counterfactual.remove import vision_block_mask

    return vision_block_mask(prompt, spec.vision_start_id, spec.vision_end_id)
