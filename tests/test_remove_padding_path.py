"""veRL's GPU forward path on the CPU: remove-padding (packed sequences), bf16 autocast, varlen attention.

Every GPU recipe runs the actor with ``use_remove_padding=true`` in bf16 and ``flash_attention_2``, and there ToR's
truncated entropy reads the packed logits (``engine_truncated_entropy``, remove-padding branch) and the
image-removed pass goes through veRL's packed forward of the model family. Only flash-attn's kernel cannot run
here: ``varlen_attention_in_verl`` (veRL's own Qwen2-VL attention) and ``varlen_attention_in_transformers``
(transformers' ``flash_attention_2``, which Qwen3-VL, Qwen3.5 and every vision tower use) swap it for plain torch
attention within each packed sequence; everything else is veRL's and transformers' code, Qwen3.5's packed
linear-attention layers included. Results are compared with an independent float32 forward of the plain
transformers model, one sample at a time, within bf16 rounding, for each family of ``ENGINE_FAMILIES``.

The tiny model's output layer is scaled up so that its next-token distributions are peaked and differ from
position to position: a token misaligned by one position would be off by far more than bf16 rounding.
"""

import os

import numpy as np
import pytest
import torch
from PIL import Image
from reference_math import reference_truncated_entropy, reference_truncated_entropy_bounds
from tiny_families import ENGINE_FAMILIES

from verl_tor.engine_truncated_entropy import TRUNCATED_ENTROPY, TRUNCATED_ENTROPY_TOP_P
from verl_tor.nested import as_list
from verl_tor.testing.rollout_rows import agent_loop_row, image_removed_rows, rows_to_batch
from verl_tor.testing.varlen_attention import varlen_attention

LOGIT_SCALE = 20.0
# bf16 keeps 8 significant bits: log-probs around -16 are rounded to 0.0625; entropies are computed in fp32 from
# bf16 logits.
LOG_PROB_ATOL, ENTROPY_ATOL = 0.15, 0.08
# Probability mass by which bf16 may misjudge the top-p boundary (a tie within 0.003 of top_p = 0.5 flipped the
# set of one Qwen3-VL position, changing its entropy by 0.22).
TOP_P_MASS_SLACK = 0.01
# Scores a test must tell apart (one position off, with vs without images) differ by more than this many
# tolerances (checked, so that the comparisons can fail): a wrong result lies within one tolerance (bf16 noise) of
# the score it wrongly computed, so it is off from the right one by more than separation - 1 tolerance, which
# fails the comparison once the separation exceeds 2 tolerances. (The tiny Qwen3.5-MoE's images move a log-prob by
# 0.41 = 2.8 tolerances at most.)
MIN_SEPARATION_IN_TOLERANCES = 2.5


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_varlen_attention_is_causal_attention_within_each_packed_sequence(kv_heads):
    generator = torch.Generator().manual_seed(0)
    lengths, heads, dim = [3, 5, 1, 4], 4, 8
    q = torch.randn(sum(lengths), heads, dim, generator=generator)
    k, v = (torch.randn(sum(lengths), kv_heads, dim, generator=generator) for _ in range(2))
    offsets = torch.tensor(np.cumsum([0, *lengths]), dtype=torch.int32)
    got = varlen_attention(q, k, v, offsets, offsets, max(lengths), max(lengths), causal=True)
    group = heads // kv_heads  # grouped-query attention: query head h reads KV head h // group
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        qs = q[start:end].double().transpose(0, 1)  # [H, L, D]
        ks, vs = (t[start:end].double().transpose(0, 1)[[h // group for h in range(heads)]] for t in (k, v))
        scores = qs @ ks.transpose(1, 2) / dim**0.5
        scores = scores.masked_fill(torch.ones(end - start, end - start).triu(1).bool(), float("-inf"))
        expected = (scores.softmax(-1) @ vs).transpose(0, 1)
        torch.testing.assert_close(got[start:end].double(), expected, rtol=1e-5, atol=1e-6)
    # Keys of other sequences are invisible: changing them changes nothing in the first sequence.
    k2 = k.clone()
    k2[lengths[0] :] += 5
    torch.testing.assert_close(
        varlen_attention(q, k2, v, offsets, offsets, 5, 5, causal=True)[: lengths[0]], got[: lengths[0]]
    )


def test_varlen_attention_refuses_what_it_does_not_implement():
    x = torch.zeros(4, 2, 8)
    offsets = torch.tensor([0, 4], dtype=torch.int32)
    with pytest.raises(ValueError, match="dropout"):
        varlen_attention(x, x, x, offsets, offsets, 4, 4, dropout_p=0.1)
    with pytest.raises(ValueError, match="multiple of KV heads"):
        varlen_attention(torch.zeros(4, 3, 8), x, x, offsets, offsets, 4, 4)


def test_flash_attention_is_varlen_attention_of_each_row():
    from verl_tor.testing.varlen_attention import flash_attention

    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 5, 2, 8, generator=generator) for _ in range(3))
    got = flash_attention(q, k, v, causal=True)
    offsets = torch.tensor([0, 5], dtype=torch.int32)
    for row in range(2):
        torch.testing.assert_close(
            got[row], varlen_attention(q[row], k[row], v[row], offsets, offsets, 5, 5, causal=True)
        )


def test_entropy_bounds_cover_both_top_p_sets_only_at_a_boundary_tie():
    # Probabilities 0.499, 0.3, 0.201: at top_p = 0.5 the second token is in by 0.001 of mass.
    logits = torch.tensor([[0.499, 0.3, 0.201], [0.7, 0.2, 0.1]]).log()
    exact = reference_truncated_entropy(logits, 0.5)
    low, high = reference_truncated_entropy_bounds(logits, 0.5, 0.01)
    assert low[0] == 0.0 and high[0] == exact[0] > 0.6  # {first} or {first, second}
    assert low[1] == high[1] == exact[1] == 0.0  # no tie: one set
    np.testing.assert_array_equal(reference_truncated_entropy_bounds(logits, 0.5, 0.0), (exact, exact))


def test_verl_module_is_restored_after_the_swap():
    from verl.models.transformers import qwen2_vl

    from verl_tor.testing.varlen_attention import FLASH_ATTN_NAMES, varlen_attention_in_verl

    before = {name: getattr(qwen2_vl, name, None) for name in FLASH_ATTN_NAMES}
    with varlen_attention_in_verl():
        assert qwen2_vl.flash_attn_varlen_func is not before["flash_attn_varlen_func"]
    assert {name: getattr(qwen2_vl, name, None) for name in FLASH_ATTN_NAMES} == before


def test_transformers_flash_attention_is_restored_after_the_swap():
    from transformers import modeling_flash_attention_utils as flash_utils
    from transformers import modeling_utils

    from verl_tor.testing.varlen_attention import TRANSFORMERS_FLASH_GLOBALS, varlen_attention_in_transformers

    before = {name: getattr(flash_utils, name) for name in TRANSFORMERS_FLASH_GLOBALS}
    check = modeling_utils.PreTrainedModel._check_and_adjust_attn_implementation
    with varlen_attention_in_transformers():
        (_, varlen, *_), _ = flash_utils.lazy_import_flash_attention("flash_attention_2")
        assert varlen is varlen_attention
    assert {name: getattr(flash_utils, name) for name in TRANSFORMERS_FLASH_GLOBALS} == before
    assert modeling_utils.PreTrainedModel._check_and_adjust_attn_implementation is check


# ---------------------------------------------------------------------------------------------------------------
# Through veRL's engine with use_remove_padding=true and bf16, as on a GPU.
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=ENGINE_FAMILIES)
def peaked_model_dir(request, tiny_model_dirs, tmp_path_factory) -> str:
    """The family's tiny model with its output layer scaled by ``LOGIT_SCALE`` (same tokenizer and processor)."""
    import shutil

    from safetensors.torch import load_file, save_file

    out = str(tmp_path_factory.mktemp(f"peaked_tiny_{request.param}"))
    shutil.copytree(tiny_model_dirs[request.param], out, dirs_exist_ok=True)
    weights_path = os.path.join(out, "model.safetensors")
    weights = load_file(weights_path)
    weights["lm_head.weight"] *= LOGIT_SCALE
    save_file(weights, weights_path, metadata={"format": "pt"})
    return out


@pytest.fixture(scope="module")
def processor(peaked_model_dir):
    from verl.utils import hf_processor

    return hf_processor(peaked_model_dir)


def _image(rgb, size=56):
    return Image.new("RGB", (size, size), rgb)


def _messages(n_images: int) -> list[dict]:
    text = "What colour is the image? Answer with one word."
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def samples(processor):
    """One-image, text-only and two-image samples of different lengths, and the from-scratch text-only prompts."""
    tokenizer = processor.tokenizer
    response = tokenizer.encode(" red blue green red") + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    with_images = [
        agent_loop_row(processor, _messages(1), [_image((200, 30, 30))], response),
        agent_loop_row(processor, _messages(0), None, response[:3]),
        agent_loop_row(processor, _messages(2), [_image((20, 30, 230)), _image((240, 240, 20), 84)], response[1:]),
    ]
    without_images = [agent_loop_row(processor, _messages(0), None, row["responses"].tolist()) for row in with_images]
    return with_images, without_images


@pytest.fixture(scope="module")
def reference_logits(peaked_model_dir, samples):
    """Per sample: fp32 logits at the positions that predict its response, from plain transformers.

    Computed before veRL's engine exists in this process (it monkey-patches transformers' Qwen-VL classes).
    """
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(peaked_model_dir).eval()

    def logits_of(row):
        ids = row["input_ids"][None]
        images = {k: v for k, v in row["multi_modal_inputs"].items() if k in ("pixel_values", "image_grid_thw")}
        with torch.no_grad():
            output = model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                mm_token_type_ids=(ids == model.config.image_token_id).int(),
                use_cache=False,
                **images,
            )
        n = len(row["responses"])
        return output.logits[0, -n - 1 : -1].double()

    with_images, without_images = samples
    return [logits_of(row) for row in with_images], [logits_of(row) for row in without_images]


@pytest.fixture(scope="module")
def packed_bf16_actor(peaked_model_dir, reference_logits):
    from verl_tor.testing.actor_engine import actor_overrides, actor_worker
    from verl_tor.testing.varlen_attention import varlen_attention_in_transformers, varlen_attention_in_verl

    overrides = [o for o in actor_overrides(peaked_model_dir) if ".attn_implementation=" not in o] + [
        "actor_rollout_ref.model.use_remove_padding=true",
        # veRL's default and the recipes': flash-attn (its kernel swapped below), bf16 autocast over fp32 parameters.
        "+actor_rollout_ref.model.override_config.attn_implementation=flash_attention_2",
        "actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=bf16",
    ]
    with varlen_attention_in_verl(), varlen_attention_in_transformers(), actor_worker(overrides) as worker:
        assert worker.engine.module.config._attn_implementation == "flash_attention_2"
        yield worker


def _infer(actor, batch, temperature=1.0, **meta):
    """Response log-probs and the engine's output of veRL's inference forward (all rows packed together)."""
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import response_from_nested

    tu.assign_non_tensor(batch, temperature=temperature, calculate_entropy=True, compute_loss=False, **meta)
    output = actor.infer_batch(batch)
    return [lp.double() for lp in as_list(response_from_nested(output["log_probs"], batch["response_mask"]))], output


def _log_probs_of(logits: torch.Tensor, responses: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return torch.log_softmax(logits / temperature, dim=-1).gather(1, responses[:, None])[:, 0]


def test_references_are_sensitive_to_a_one_position_misalignment(samples, reference_logits):
    for row, logits in zip(samples[0], reference_logits[0], strict=True):
        entropy = reference_truncated_entropy(logits, 0.95)
        assert np.abs(entropy[1:] - entropy[:-1]).max() > MIN_SEPARATION_IN_TOLERANCES * ENTROPY_ATOL
        log_probs = _log_probs_of(logits, row["responses"])
        shifted = _log_probs_of(logits[1:], row["responses"][:-1])
        assert (log_probs[:-1] - shifted).abs().max() > MIN_SEPARATION_IN_TOLERANCES * LOG_PROB_ATOL


@pytest.mark.parametrize("top_p,temperature", [(0.95, 1.0), (0.5, 0.7)])
def test_packed_old_log_prob_forward_gives_log_probs_and_truncated_entropy(
    packed_bf16_actor, samples, reference_logits, top_p, temperature
):
    with_images, _ = samples
    log_probs, output = _infer(
        packed_bf16_actor, rows_to_batch(with_images), temperature, **{TRUNCATED_ENTROPY_TOP_P: top_p}
    )
    entropies = as_list(output[TRUNCATED_ENTROPY])
    for row, logits, got_log_probs, got_entropy in zip(
        with_images, reference_logits[0], log_probs, entropies, strict=True
    ):
        expected = _log_probs_of(logits, row["responses"], temperature)
        # The bf16 logits' errors are divided by the temperature as the logits are.
        torch.testing.assert_close(got_log_probs, expected, rtol=0, atol=LOG_PROB_ATOL / temperature)
        # Where the reference's top-p boundary is within bf16's error of a token, either set may be selected.
        low, high = reference_truncated_entropy_bounds(logits / temperature, top_p, TOP_P_MASS_SLACK)
        got_entropy = got_entropy.double().numpy()
        assert (got_entropy >= low - ENTROPY_ATOL).all() and (got_entropy <= high + ENTROPY_ATOL).all()


def test_single_sequence_micro_batch(packed_bf16_actor, samples, reference_logits):
    """A micro-batch of one packed sequence takes transformers' flash-attention wrapper instead of varlen."""
    row, logits = samples[0][0], reference_logits[0][0]
    log_probs, output = _infer(packed_bf16_actor, rows_to_batch([row]), **{TRUNCATED_ENTROPY_TOP_P: 0.95})
    torch.testing.assert_close(log_probs[0], _log_probs_of(logits, row["responses"]), rtol=0, atol=LOG_PROB_ATOL)
    expected_entropy = torch.from_numpy(reference_truncated_entropy(logits, 0.95))
    torch.testing.assert_close(
        as_list(output[TRUNCATED_ENTROPY])[0].double(), expected_entropy, rtol=0, atol=ENTROPY_ATOL
    )


def test_packed_image_removed_pass_equals_the_conversation_without_images(
    packed_bf16_actor, processor, samples, reference_logits
):
    with_images, without_images = samples
    removed, rows = image_removed_rows(processor, with_images)
    assert rows == [0, 2]
    # An image-free packed batch (for Qwen2.5-VL it needs the text-only patch of veRL's Qwen2-VL forward).
    removed_log_probs, _ = _infer(packed_bf16_actor, removed, temperature=0.7)
    for k, i in enumerate(rows):
        responses = without_images[i]["responses"]
        expected = _log_probs_of(reference_logits[1][i], responses, 0.7)
        torch.testing.assert_close(removed_log_probs[k], expected, rtol=0, atol=LOG_PROB_ATOL)
        # The images matter to this model by more than the tolerance: the comparison above can tell them apart.
        with_image = _log_probs_of(reference_logits[0][i], responses, 0.7)
        assert (with_image - expected).abs().max() > MIN_SEPARATION_IN_TOLERANCES * LOG_PROB_ATOL
