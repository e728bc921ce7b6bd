"""The image-removed pass, checked against prompts built from scratch without the image, through veRL's engine.

The actor is veRL's real ``TrainingWorker`` + FSDP engine in this process (fp32, sdpa, no remove-padding, CPU);
batches are laid out with veRL's own agent-loop helpers. "From scratch" means: the conversation without its
image content, rendered by the processor's chat template, with position ids from the processor's rope index.
Every engine test runs for each model family of ``tiny_families.ENGINE_FAMILIES`` (Qwen2.5-VL, Qwen3-VL dense and
MoE with DeepStack, Qwen3.5 with linear-attention layers): one actor per family, built once per module.
"""

import pytest
import torch
from PIL import Image
from reference_math import reference_truncated_entropy
from tiny_families import ENGINE_FAMILIES
from transformers import AutoModelForImageTextToText

from verl_tor.counterfactual import COUNTERFACTUALS, counterfactual_batch
from verl_tor.counterfactual.families import vision_block_spec
from verl_tor.counterfactual.remove import PromptText, image_removed_batch, vision_block_mask
from verl_tor.engine_truncated_entropy import TRUNCATED_ENTROPY, TRUNCATED_ENTROPY_TOP_P
from verl_tor.nested import as_list, nested_rows
from verl_tor.steps import pad_rows_to_multiple
from verl_tor.testing.rollout_rows import agent_loop_row, image_removed_rows, rows_to_batch, rows_to_samples

QUESTION = "What colour is the image? Answer with one word."
MICRO_BATCH = 2


def _image(rgb, size=56):
    return Image.new("RGB", (size, size), rgb)


def _messages(n_images: int, text: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]


# ---------------------------------------------------------------------------------------------------------------
# The builder alone.
# ---------------------------------------------------------------------------------------------------------------


def test_vision_block_mask_covers_every_block_with_its_markers():
    s, e, pad = 7, 8, 9
    ids = torch.tensor([1, s, pad, pad, e, 2, 3, s, pad, e, 4])
    mask = vision_block_mask(ids, s, e)
    assert ids[~mask].tolist() == [1, 2, 3, 4]
    assert mask.tolist() == [False, True, True, True, True, False, False, True, True, True, False]


def test_nested_rows_are_ragged_in_the_last_dimension_even_for_equal_lengths():
    rows = [torch.arange(5).expand(4, -1).clone(), torch.arange(5).expand(4, -1).clone()]
    nested = nested_rows(rows)
    assert nested.is_nested and nested._ragged_idx == 2
    assert nested.values().shape == (4, 10)
    assert torch.equal(nested.to_padded_tensor(0), torch.stack(rows))


class _IdentityTokenizer:
    """Decodes ids to themselves and encodes them back: re-tokenizing changes nothing (the builder's own logic)."""

    def decode(self, ids, **_):
        return tuple(ids)

    def encode(self, text, **_):
        return list(text)


_IDENTITY_TEXT = PromptText(_IdentityTokenizer(), frozenset({7, 8}), None, None)


def test_builder_skips_text_only_samples_and_rebuilds_text_position_ids():
    s, e, pad = 7, 8, 9
    prompts = [torch.tensor([1, s, pad, e, 2]), torch.tensor([1, 2, 3]), torch.tensor([s, pad, e, s, pad, e, 5])]
    responses = [torch.tensor([10, 11]), torch.tensor([12]), torch.tensor([13, 14, 15])]
    masks = [torch.ones(2), torch.ones(1), torch.tensor([1, 1, 0])]
    batch, rows = image_removed_batch(prompts, responses, masks, 4, s, e, _IDENTITY_TEXT)
    assert rows == [0, 2]
    assert [t.tolist() for t in as_list(batch["input_ids"])] == [[1, 2, 10, 11], [5, 13, 14, 15]]
    assert [t.tolist() for t in as_list(batch["prompts"])] == [[1, 2], [5]]
    assert as_list(batch["response_mask"])[1].tolist() == [1, 1, 0]
    for positions, ids in zip(as_list(batch["position_ids"]), as_list(batch["input_ids"]), strict=True):
        assert torch.equal(positions, torch.arange(len(ids)).expand(4, -1))
    none = image_removed_batch([torch.tensor([1, 2])], [torch.tensor([3])], [torch.ones(1)], 4, s, e, _IDENTITY_TEXT)
    assert none == (None, [])


# ---------------------------------------------------------------------------------------------------------------
# Through veRL's engine.
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=ENGINE_FAMILIES)
def model_dir(request, tiny_model_dirs) -> str:
    return tiny_model_dirs[request.param]


# Tests whose engine calls add little per family run for Qwen2.5-VL only (the mixed-batch and entropy tests cover
# one image, two images, text-only samples and the truncated entropy for every family).
QWEN2_5_VL_ONLY = pytest.mark.families("qwen2_5_vl")


@pytest.fixture(scope="module")
def actor(model_dir):
    from verl_tor.testing.actor_engine import actor_overrides, actor_worker

    with actor_worker(actor_overrides(model_dir, micro_batch_size=MICRO_BATCH)) as worker:
        yield worker


@pytest.fixture(scope="module")
def processor(model_dir):
    from verl.utils import hf_processor

    return hf_processor(model_dir)


def _response(processor, text=" red blue") -> list[int]:
    tokenizer = processor.tokenizer
    return tokenizer.encode(text) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]


def _log_probs(actor, rows, temperature=1.0, **meta):
    """Response log-probs (and the output TensorDict) of ``rows`` from the actor's inference forward."""
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import response_from_nested

    # Micro-batches have a fixed size (2): pad like the trainer does, by repeating a row.
    if isinstance(rows, list):
        count = len(rows)
        batch = rows_to_batch(rows + rows[-1:] * (len(rows) % MICRO_BATCH))
    else:
        count = len(rows)
        batch = pad_rows_to_multiple(rows, MICRO_BATCH)
    tu.assign_non_tensor(batch, temperature=temperature, calculate_entropy=True, compute_loss=False, **meta)
    output = actor.infer_batch(batch)
    return as_list(response_from_nested(output["log_probs"], batch["response_mask"]))[:count], output, batch


@QWEN2_5_VL_ONLY
@pytest.mark.parametrize("n_images", [1, 2])
def test_image_removed_log_probs_equal_the_conversation_built_without_the_image(actor, processor, n_images):
    response = _response(processor)
    images = [_image((200, 30, 30)), _image((20, 40, 220), size=84)][:n_images]
    with_image = [agent_loop_row(processor, _messages(n_images), images, response)]
    from_scratch = [agent_loop_row(processor, _messages(0), None, response)]
    removed, rows = image_removed_rows(processor, with_image)
    assert rows == [0]
    # Same tokens and positions as the prompt rendered without the image...
    assert torch.equal(as_list(removed["input_ids"])[0], from_scratch[0]["input_ids"])
    assert torch.equal(as_list(removed["position_ids"])[0], from_scratch[0]["position_ids"])
    # ...and the same log-probs through the engine.
    removed_lp, _, _ = _log_probs(actor, removed, temperature=0.7)
    scratch_lp, _, _ = _log_probs(actor, from_scratch, temperature=0.7)
    torch.testing.assert_close(removed_lp[0], scratch_lp[0], rtol=0, atol=1e-5)
    # The image matters to this model: with it, the log-probs differ.
    image_lp, _, _ = _log_probs(actor, with_image, temperature=0.7)
    assert (image_lp[0] - removed_lp[0]).abs().max() > 1e-4


def test_mixed_batch_of_image_and_text_only_samples(actor, processor):
    response = _response(processor, " green")
    samples = [
        agent_loop_row(processor, _messages(1), [_image((10, 200, 10))], response),
        agent_loop_row(processor, _messages(0, "How many shapes are there?"), None, _response(processor, " 3")),
        agent_loop_row(processor, _messages(2), [_image((10, 10, 200)), _image((240, 240, 20))], response),
        agent_loop_row(processor, _messages(0), None, response),
    ]
    old_lp, _, _ = _log_probs(actor, samples)  # veRL's old-log-prob forward on the mixed batch
    removed, rows = image_removed_rows(processor, samples)
    assert rows == [0, 2]
    removed_lp, _, _ = _log_probs(actor, removed)  # an image-free micro-batch: needs the text-only patch
    scratch_lp, _, _ = _log_probs(actor, [samples[3], agent_loop_row(processor, _messages(0), None, response)])
    for lp in removed_lp:
        torch.testing.assert_close(lp, scratch_lp[0], rtol=0, atol=1e-5)
    # The images matter to this model: with them, the log-probs differ (so the comparison above can fail).
    for row, lp in zip(rows, removed_lp, strict=True):
        assert (old_lp[row] - lp).abs().max() > 1e-4
    # Text-only samples' old log-probs are unaffected by sharing the batch with image samples.
    torch.testing.assert_close(old_lp[3], scratch_lp[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("top_p,temperature", [(0.5, 0.7)])
def test_engine_returns_truncated_entropy_of_the_sampled_distribution(actor, processor, model_dir, top_p, temperature):
    _check_truncated_entropy(actor, processor, model_dir, top_p, temperature)


@QWEN2_5_VL_ONLY
@pytest.mark.parametrize("top_p,temperature", [(0.95, 1.0), (1.0, 1.0)])
def test_engine_returns_truncated_entropy_at_other_settings(actor, processor, model_dir, top_p, temperature):
    _check_truncated_entropy(actor, processor, model_dir, top_p, temperature)


def _check_truncated_entropy(actor, processor, model_dir, top_p, temperature):
    from verl.workers.utils.padding import response_from_nested

    response = _response(processor, " red red blue green")
    samples = [
        agent_loop_row(processor, _messages(1), [_image((200, 30, 30))], response),
        agent_loop_row(processor, _messages(0), None, response[:3]),
    ]
    _, output, batch = _log_probs(actor, samples, temperature=temperature, **{TRUNCATED_ENTROPY_TOP_P: top_p})
    truncated = as_list(output[TRUNCATED_ENTROPY])[:2]

    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    for sample, got in zip(samples, truncated, strict=True):
        inputs = {"input_ids": sample["input_ids"][None], **sample["multi_modal_inputs"]}
        inputs.pop("images_seqlens", None)
        # (4, 1, L): veRL's engine has patched the model class in this process to take its position ids.
        inputs["position_ids"] = sample["position_ids"][:, None]
        with torch.no_grad():
            logits = model(**inputs, use_cache=False).logits[0]
        n = len(sample["responses"])
        # Position t's logits predict token t + 1: the response is predicted by the n positions before its end.
        reference = torch.from_numpy(reference_truncated_entropy(logits[-n - 1 : -1] / temperature, top_p))
        torch.testing.assert_close(got.double(), reference, rtol=0, atol=2e-4)
    if top_p == 1.0:
        full = as_list(response_from_nested(output["entropy"], batch["response_mask"]))[:2]
        for got, verl_entropy in zip(truncated, full, strict=True):
            torch.testing.assert_close(got, verl_entropy, rtol=0, atol=1e-5)


@QWEN2_5_VL_ONLY
def test_engine_output_is_unchanged_without_the_request(actor, processor):
    samples = [agent_loop_row(processor, _messages(1), [_image((1, 2, 3))], _response(processor))]
    _, output, _ = _log_probs(actor, samples)
    assert TRUNCATED_ENTROPY not in output.keys()


# ---------------------------------------------------------------------------------------------------------------
# The other counterfactuals through veRL's engine.
# ---------------------------------------------------------------------------------------------------------------


def _response_log_probs(logits: torch.Tensor, ids: torch.Tensor, n: int, temperature: float) -> torch.Tensor:
    """Log-probs of the last ``n`` ids from a forward's ``[L, V]`` logits (position t predicts token t + 1)."""
    return torch.log_softmax(logits[-n - 1 : -1].float() / temperature, -1).gather(-1, ids[-n:, None])[:, 0]


# Qwen3.5's linear-attention layers take no attention mask (their state runs through every token): there the
# deletion itself is what "cannot see the image" means, and no masked forward exists to compare it with.
@pytest.mark.families("qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")
def test_mask_image_attention_is_the_forward_with_the_vision_columns_masked(actor, processor, model_dir):
    """Deleting the vision tokens, every other token at its image-present position, through veRL's engine, equals
    the image-present sequence with a 4-D attention mask that hides the vision tokens from every later token."""
    response = _response(processor, " red blue green")
    content = [{"type": "text", "text": "Look at"}, {"type": "image"}, {"type": "text", "text": QUESTION}]
    row = agent_loop_row(processor, [{"role": "user", "content": content}], [_image((200, 30, 30))], response)
    spec = vision_block_spec(processor, processor.config)
    masked_batch, rows = counterfactual_batch("mask_image_attention", spec, rows_to_samples([row]), seed=0, step=0)
    assert rows == [0]
    engine_lp, _, _ = _log_probs(actor, masked_batch, temperature=0.7)

    ids, n = row["input_ids"], len(response)
    vision = ids == spec.image_token_id
    allowed = torch.ones(len(ids), len(ids), dtype=torch.bool).tril()
    allowed[:, vision] = torch.eye(len(ids), dtype=torch.bool)[:, vision]  # a vision token's own row is not read
    mask = torch.zeros(1, 1, len(ids), len(ids)).masked_fill(~allowed, torch.finfo(torch.float32).min)
    inputs = {key: value for key, value in row["multi_modal_inputs"].items() if key != "images_seqlens"}
    model = AutoModelForImageTextToText.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        masked_logits = model(
            input_ids=ids[None], position_ids=row["position_ids"][:, None], attention_mask=mask, **inputs
        ).logits[0]
        image_logits = model(input_ids=ids[None], position_ids=row["position_ids"][:, None], **inputs).logits[0]
    reference = _response_log_probs(masked_logits, ids, n, 0.7)
    torch.testing.assert_close(engine_lp[0], reference, rtol=0, atol=1e-5)
    # The image matters to this model: seen, the log-probs differ (so the comparison above can fail).
    assert (_response_log_probs(image_logits, ids, n, 0.7) - reference).abs().max() > 1e-4


def test_patch_counterfactual_reaches_the_vision_tower(actor, processor):
    """black_patches through veRL's engine equals the picture with those patches blacked, processed from scratch."""
    merged = processor.image_processor.patch_size * processor.image_processor.merge_size
    picture = torch.randint(0, 256, (2 * merged, 2 * merged, 3), generator=torch.Generator().manual_seed(0))
    picture = picture.to(torch.uint8).numpy()
    response = _response(processor)
    row = agent_loop_row(processor, _messages(1), [Image.fromarray(picture)], response)
    spec = vision_block_spec(processor, processor.config)
    batch, rows = counterfactual_batch("black_patches", spec, rows_to_samples([row]), seed=1, step=2)
    assert rows == [0]
    counterfactual_lp, _, _ = _log_probs(actor, batch)
    # The blackened patches, found from the pixels, drawn on the picture (merge windows row-major, then patches).
    patch, merge = processor.image_processor.patch_size, processor.image_processor.merge_size
    changed = (batch["multi_modal_inputs"][0]["pixel_values"] != row["multi_modal_inputs"]["pixel_values"]).any(1)
    assert 0 < int(changed.sum()) < len(changed)
    _, grid_h, grid_w = (int(v) for v in row["multi_modal_inputs"]["image_grid_thw"][0])
    blackened = picture.copy()
    index = 0
    for window_y in range(grid_h // merge):
        for window_x in range(grid_w // merge):
            for y in range(window_y * merge, window_y * merge + merge):
                for x in range(window_x * merge, window_x * merge + merge):
                    if changed[index]:
                        blackened[y * patch : (y + 1) * patch, x * patch : (x + 1) * patch] = 0
                    index += 1
    from_scratch = agent_loop_row(processor, _messages(1), [Image.fromarray(blackened)], response)
    scratch_lp, _, _ = _log_probs(actor, [from_scratch])
    torch.testing.assert_close(counterfactual_lp[0], scratch_lp[0], rtol=0, atol=1e-5)
    original_lp, _, _ = _log_probs(actor, [row])
    assert (original_lp[0] - counterfactual_lp[0]).abs().max() > 1e-4


class _TransferQueue:
    """The two TransferQueue calls the trainer's pass makes, over per-sample rows held in memory."""

    def __init__(self, rows: list[dict]):
        self.rows, self.put = rows, {}

    def kv_batch_get(self, keys, partition_id, select_fields):
        from tensordict import NonTensorStack, TensorDict

        fields = {
            key: NonTensorStack(*[row[key] for row in self.rows])
            if key == "multi_modal_inputs"
            else nested_rows([row[key] for row in self.rows])
            for key in select_fields
        }
        return TensorDict(fields, batch_size=[len(self.rows)])

    def kv_batch_put(self, keys, partition_id, fields):
        self.put.update({key: as_list(fields[key]) for key in fields.keys()})


@QWEN2_5_VL_ONLY
@pytest.mark.parametrize("kind", COUNTERFACTUALS)
def test_trainer_pass_stores_counterfactual_log_probs_and_old_ones_without_an_image(
    kind, actor, processor, model_dir, monkeypatch
):
    """The trainer's pass on a batch of image, text-only and padding samples (veRL's engine, TransferQueue faked):
    image rows get the log-probs of ``counterfactual_batch`` through the engine, the others their old log-probs
    (Δ = 0), and ``tor_has_image`` flags the samples with an image."""
    from types import SimpleNamespace

    from transfer_queue import KVBatchMeta

    from verl_tor import trainer as trainer_module
    from verl_tor.methods.config import TokenCreditConfig
    from verl_tor.testing.actor_engine import actor_overrides, compose_ppo_config

    response = _response(processor, " red blue")
    rows = [
        agent_loop_row(processor, _messages(0), None, response),
        agent_loop_row(processor, _messages(1), [_image((200, 30, 30))], response),
        agent_loop_row(processor, _messages(2), [_image((20, 40, 220)), _image((240, 240, 20))], response),
        agent_loop_row(processor, _messages(1), [_image((9, 9, 9))], response),  # padding (a repeated row)
    ]
    old_lp, output, _ = _log_probs(actor, rows)
    for row, log_probs in zip(rows, as_list(output["log_probs"]), strict=True):
        row["log_probs"] = log_probs  # whole-sequence, as the old-log-prob forward leaves them
    queue = _TransferQueue(rows)
    monkeypatch.setattr(trainer_module, "tq", queue)
    trainer = trainer_module.ToRTrainer.__new__(trainer_module.ToRTrainer)
    trainer.tor = TokenCreditConfig.from_mapping({"counterfactual": kind})
    trainer.config = compose_ppo_config(actor_overrides(model_dir, micro_batch_size=MICRO_BATCH))
    trainer.vision_spec = vision_block_spec(processor, processor.config)
    trainer.vision_placeholder_ids = [processor.image_token_id]
    trainer.counterfactual_seed, trainer.global_steps = 7, 3
    trainer.actor_rollout_wg = SimpleNamespace(_dispatch_info={"actor": [0]})
    batch = KVBatchMeta(keys=list("abcd"), tags=[{}, {}, {}, {"is_padding": True}], partition_id="train")
    metrics = {}
    trainer._compute_counterfactual_log_probs(batch, metrics, lambda data: actor.infer_batch(data))

    stored = queue.put[trainer_module.COUNTERFACTUAL_LOG_PROBS]
    expected_batch, image_rows = counterfactual_batch(kind, trainer.vision_spec, rows_to_samples(rows[1:3]), 7, 3)
    assert image_rows == [0, 1]
    expected, _, _ = _log_probs(actor, expected_batch)
    for row in (0, 3):  # text-only and padding: Δ = 0 exactly
        assert torch.equal(stored[row], old_lp[row].float())
    for row, lp in zip((1, 2), expected, strict=True):
        torch.testing.assert_close(stored[row], lp.float(), rtol=0, atol=1e-6)
        assert (stored[row] - old_lp[row]).abs().max() > 1e-5  # the counterfactual changed something
    assert [bool(flag) for flag in queue.put[trainer_module.HAS_IMAGE]] == [False, True, True, False]
    assert metrics["tor/image_sample_fraction"] == pytest.approx(2 / 3)
