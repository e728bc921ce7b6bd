"""veRL 0.9.1's Qwen2.5-VL input embedding crashes on image-free micro-batches; our plugin's patch fixes it."""

import pytest
import torch
from transformers import AutoModelForImageTextToText


@pytest.fixture(scope="module")
def qwen_vl_model(tiny_model_dir):
    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir).model.eval()


def test_plugin_patched_get_input_embeds():
    import verl  # noqa: F401  (loads the plugin)
    from verl.models.transformers import qwen2_vl

    assert getattr(qwen2_vl._get_input_embeds, "_verl_tor_patched", False)


def test_text_only_batch_crashes_without_patch_and_works_with_it(qwen_vl_model):
    from verl.models.transformers import qwen2_vl

    input_ids = torch.tensor([[1, 2, 3, 4, 5]])
    unpatched = qwen2_vl._get_input_embeds.__wrapped__
    with pytest.raises(AttributeError, match="mean"):
        unpatched(qwen_vl_model, input_ids)

    embeds, attention_mask = qwen2_vl._get_input_embeds(qwen_vl_model, input_ids)
    assert attention_mask is None
    torch.testing.assert_close(embeds, qwen_vl_model.get_input_embeddings()(input_ids), rtol=0, atol=0)


def test_text_only_batch_keeps_vision_tower_in_the_graph(qwen_vl_model):
    """The dummy image must still reach the vision tower (FSDP ranks without images take part in its gathers)."""
    from verl.models.transformers import qwen2_vl

    qwen_vl_model.zero_grad()
    embeds, _ = qwen2_vl._get_input_embeds(qwen_vl_model, torch.tensor([[1, 2, 3]]))
    embeds.sum().backward()
    vision_grads = [p.grad for p in qwen_vl_model.visual.parameters()]
    assert all(g is not None for g in vision_grads)
    assert all(torch.count_nonzero(g) == 0 for g in vision_grads)


def test_image_batch_is_left_to_verl(qwen_vl_model, tiny_model_dir):
    from PIL import Image
    from transformers import AutoProcessor
    from verl.models.transformers import qwen2_vl

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.new("RGB", (56, 56), (200, 10, 10))], return_tensors="pt")
    args = (qwen_vl_model, inputs["input_ids"], None, inputs["pixel_values"], None, inputs["image_grid_thw"])
    patched, _ = qwen2_vl._get_input_embeds(*args)
    original, _ = qwen2_vl._get_input_embeds.__wrapped__(*args)
    torch.testing.assert_close(patched, original, rtol=0, atol=0)
