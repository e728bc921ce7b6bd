"""The token inspector's recorder (``verl_tor.inspect.record``) against independent computations.

Thumbnails are checked against the picture the processor was given (its patch layout undone), the sample choice
against its promises (strata in turn, independent of batch order, fixed by the seed), and the written records
against the batch they were made from, read back with the page's own reader.
"""

from __future__ import annotations

import base64
import io
import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from verl_tor.inspect.reader import read_records
from verl_tor.inspect.record import (
    HISTOGRAM_BINS,
    InspectConfig,
    InspectRecorder,
    StepBatch,
    choose_samples,
    images_from_patches,
    token_sets,
)
from verl_tor.steps import apply_token_weights


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def _picture(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_images_from_patches_undo_the_processors_layout_and_normalisation(processor):
    """Sizes that are multiples of the 28-pixel merged patch are not resized: the pictures come back as given
    (up to the float rounding of the normalisation), for several images of different shapes in one sample."""
    pictures = [_picture(56, 84, 0), _picture(112, 28, 1)]
    inputs = processor.image_processor(images=[Image.fromarray(p) for p in pictures], return_tensors="pt")
    recovered = images_from_patches(inputs["pixel_values"], inputs["image_grid_thw"], processor.image_processor)
    assert [r.shape for r in recovered] == [p.shape for p in pictures]
    for got, expected in zip(recovered, pictures, strict=True):
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_choose_samples_takes_strata_in_turn_whatever_the_batch_order():
    candidates = list(range(12))
    keys = [f"sample {i}".encode() for i in candidates]
    strata = [(i % 3 == 0, i % 2 == 0) for i in candidates]  # four strata of different sizes
    chosen = choose_samples(candidates, keys, strata, 6, seed=7)
    assert len(chosen) == len(set(chosen)) == 6
    # Round-robin: the first four come from four different strata.
    assert len({strata[i] for i in chosen[:4]}) == 4
    # The same samples in another batch order give the same choice (by content, not position).
    order = list(reversed(candidates))
    again = choose_samples(order, [keys[i] for i in order], [strata[i] for i in order], 6, seed=7)
    assert again == chosen
    assert choose_samples(candidates, keys, strata, 6, seed=8) != chosen
    assert sorted(choose_samples(candidates, keys, strata, 50, seed=7)) == candidates


def test_token_sets_name_every_combination():
    reasoning = torch.tensor([True, True, False, False])
    perception = torch.tensor([True, False, True, False])
    assert token_sets(reasoning, perception) == ["both", "reasoning", "perception", "none"]


def test_inspect_config_checks_its_keys():
    assert not InspectConfig().enabled
    cfg = InspectConfig.from_mapping({"samples_per_step": 4, "every_n_steps": 5})
    assert [step for step in range(1, 17) if cfg.records(step)] == [1, 6, 11, 16]
    with pytest.raises(ValueError, match=r"tor\.inspect\.samples_per_step"):
        InspectConfig.from_mapping({"samples_per_step": -1})
    with pytest.raises(ValueError, match=r"tor\.inspect\.every_n_step\b"):
        InspectConfig.from_mapping({"every_n_step": 2})


class _Tokenizer:
    """Decodes token i as "t<i>"; the image pad as Qwen's."""

    def decode(self, ids, skip_special_tokens=False):
        return "".join("<|image_pad|>" if i == 9 else f"t{i}" for i in ids)


def _step_batch(target: str = "advantages", with_rho: bool = False) -> StepBatch:
    """A step as the trainer records it: the weights applied through ``apply_token_weights`` to ``target``, with
    veRL's rollout-correction weights ρ when ``with_rho``."""
    generator = torch.Generator().manual_seed(0)
    lengths = [3, 4, 2, 5]
    responses = [torch.randint(10, 14, (n,), generator=generator) for n in lengths]
    mask = [torch.ones(n, dtype=torch.bool) for n in lengths]
    mask[1][3] = False
    entropy = [torch.rand(n, generator=generator) for n in lengths]
    sensitivity = [torch.rand(n, generator=generator) for n in lengths]
    reasoning = [e > 0.6 for e in entropy]
    perception = [s > 0.5 for s in sensitivity]
    weights = [
        torch.where(r, 1.0, torch.where(p, 0.5, 0.0)) * m for r, p, m in zip(reasoning, perception, mask, strict=True)
    ]
    advantages = [torch.full((n,), a) for n, a in zip(lengths, [1.5, -0.5, 0.25, 9.0], strict=True)]
    rho = [torch.rand(n, generator=generator) + 0.5 for n in lengths] if with_rho else None
    applied = apply_token_weights(target, weights, advantages, rho if target == "loss" else None)
    return StepBatch(
        rows=[0, 1, 2],  # row 3 is veRL's padding
        prompts=[torch.tensor([1, 9, 9, 9, 2]), torch.tensor([1, 2]), torch.tensor([3]), torch.tensor([4])],
        responses=responses,
        response_mask=mask,
        entropy=entropy,
        sensitivity=sensitivity,
        reasoning=reasoning,
        perception=perception,
        weights=weights,
        advantages=advantages,
        loss_advantages=applied.get("advantages", advantages),
        rho=rho,
        metrics={
            "reasoning_threshold": 0.6,
            "perception_threshold": 0.5,
            "reasoning_fraction": 0.4,
            "perception_fraction": 0.3,
            "overlap_fraction": 0.1,
        },
    )


def test_records_hold_the_batch_they_were_made_from(tmp_path, processor):
    batch = _step_batch()
    recorder = InspectRecorder(
        InspectConfig(samples_per_step=2, thumbnail_px=16), str(tmp_path), _Tokenizer(), processor
    )
    recorder.write_run_header("exp", {"reasoning_weight": 1.0})
    picture = _picture(56, 56, 3)
    pixels = processor.image_processor(images=[Image.fromarray(picture)], return_tensors="pt")
    sample = recorder.sample_record(
        batch, 0, uid="u0", data_source="src", extra_info={"index": 7, "array": np.arange(2)}, reward=1.0, acc=1.0,
        multi_modal_inputs=dict(pixels),
    )  # fmt: skip
    text_only = recorder.sample_record(
        batch, 1, uid="u1", data_source="src", extra_info=None, reward=0.0, acc=None, multi_modal_inputs={}
    )
    recorder.record_step(3, batch, [sample, text_only])

    runs, steps = read_records(recorder.path)
    assert [run["experiment"] for run in runs] == ["exp"]
    (step,) = steps
    assert step["step"] == 3 and step["n_samples"] == 3
    valid = sum(int(batch.response_mask[row].sum()) for row in batch.rows)
    assert step["n_valid_tokens"] == valid
    for name in ("entropy", "sensitivity"):
        histogram = step["histograms"][name]
        assert len(histogram["counts"]) == HISTOGRAM_BINS and sum(histogram["counts"]) == valid
    # Top tokens: counted over the real rows' selected tokens, padding row 3 left out.
    expected = {}
    for row in batch.rows:
        for token in batch.responses[row][batch.reasoning[row]].tolist():
            expected[f"t{token}"] = expected.get(f"t{token}", 0) + 1
    assert dict(step["top_tokens"]["reasoning"]) == expected

    first, second = step["samples"]
    assert first["prompt"] == "t1<|image_pad|>×3t2"
    assert first["extra_info"] == {"index": 7, "array": [0, 1]}
    assert first["has_image"] and not second["has_image"] and second["images"] == []
    (thumbnail,) = first["images"]
    image = Image.open(io.BytesIO(base64.b64decode(thumbnail.split(",", 1)[1])))
    assert image.size == (16, 16)
    # The thumbnail is the picture, scaled down.
    scaled = np.asarray(Image.fromarray(picture).resize((16, 16), Image.Resampling.BICUBIC), dtype=float)
    assert np.abs(np.asarray(image, dtype=float) - scaled).mean() < 8
    tokens = second["tokens"]
    assert tokens["id"] == batch.responses[1].tolist()
    assert tokens["text"] == [f"t{i}" for i in batch.responses[1].tolist()]
    assert tokens["valid"] == [True, True, True, False]
    assert tokens["set"] == token_sets(batch.reasoning[1], batch.perception[1])
    assert tokens["w"] == batch.weights[1].tolist()
    np.testing.assert_allclose(tokens["H"], batch.entropy[1].numpy(), rtol=1e-5)
    np.testing.assert_allclose(tokens["adv_loss"], (batch.advantages[1] * batch.weights[1]).numpy(), rtol=1e-5)
    assert "rho" not in tokens  # rollout correction off


@pytest.mark.parametrize("target", ["advantages", "loss"])
def test_recorded_advantage_and_rho_are_what_the_loss_applies(tmp_path, target):
    """Whichever way the weights enter veRL's loss, the record's adv_loss × (ρ, times w for target "loss") is the
    product the loss applies, A·w·ρ, and w and ρ are recorded separately."""
    batch = _step_batch(target, with_rho=True)
    recorder = InspectRecorder(InspectConfig(samples_per_step=1), str(tmp_path), _Tokenizer())
    recorder.write_run_header("exp", {"method": "tor"}, target, {"use": "set weights"})
    record = recorder.sample_record(
        batch, 0, uid="u", data_source="s", extra_info=None, reward=1.0, acc=1.0, multi_modal_inputs={}
    )
    tokens = record["tokens"]
    w, adv, rho = batch.weights[0], batch.advantages[0], batch.rho[0]
    np.testing.assert_allclose(tokens["rho"], rho.numpy(), rtol=1e-5)
    assert tokens["w"] == w.tolist()
    loss_multiplier = np.array(tokens["rho"]) * (np.array(tokens["w"]) if target == "loss" else 1.0)
    np.testing.assert_allclose(np.array(tokens["adv_loss"]) * loss_multiplier, (adv * w * rho).numpy(), rtol=1e-5)
    expected_adv = adv * w if target == "advantages" else adv
    np.testing.assert_allclose(tokens["adv_loss"], expected_adv.numpy(), rtol=1e-5)
    (run,) = read_records(recorder.path)[0]
    assert run["weight_target"] == target and run["tor"]["method"] == "tor" and run["version"] == 2


def test_appending_keeps_earlier_records_readable(tmp_path):
    recorder = InspectRecorder(InspectConfig(samples_per_step=1), str(tmp_path), _Tokenizer())
    batch = _step_batch()
    for run, steps in enumerate(([1, 2], [2, 3])):  # a run, then its resume redoing step 2
        recorder.write_run_header(f"run {run}", {})
        for step in steps:
            recorder.record_step(step, batch, [])
    runs, steps = read_records(recorder.path)
    assert [r["experiment"] for r in runs] == ["run 0", "run 1"]
    assert [(s["step"], s["run_index"]) for s in steps] == [(1, 0), (2, 1), (3, 1)]
    assert all(len(list(itertools.chain(s["samples"]))) == 0 for s in steps)
