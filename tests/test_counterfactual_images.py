"""The pixel counterfactuals (black_patches, mask_patches, gaussian_noise) against the family's own processor.

Each counterfactual is built in patch space, on the ``pixel_values`` veRL's agent loop stores; the reference is
built from scratch: the same change applied to the picture (pixel squares of the resized image, or noise on the
picture's pixels) and the picture run through the family's image processor. Both must agree everywhere, which
checks where the change lands (patch size 14 or 16, merge windows, channels, the two temporal copies) and that
nothing else changes. The engine-level check (the changed pixels reach the vision tower through veRL's actor) is in
``test_counterfactual.py``.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from verl_tor.counterfactual import counterfactual_batch
from verl_tor.counterfactual.families import vision_block_spec
from verl_tor.counterfactual.images import GAUSSIAN_NOISE_STD
from verl_tor.testing.rollout_rows import agent_loop_row, rows_to_samples

# One family per image processor layout: patch 14 (Qwen2.5-VL), patch 16 (Qwen3-VL; Qwen3.5 ships the same
# processor, with its own tokenizer).
PIXEL_FAMILIES = ("qwen2_5_vl", "qwen3_vl", "qwen3_5")
SEED, STEP = 11, 3


def _picture(processor, seed=0) -> np.ndarray:
    """A random picture already at a size the processor keeps (3 x 2 merge windows): no resize to undo."""
    merged = processor.image_processor.patch_size * processor.image_processor.merge_size
    return np.random.default_rng(seed).integers(0, 256, (2 * merged, 3 * merged, 3), dtype=np.uint8)


def _sample(processor, pictures: list[np.ndarray]) -> dict:
    messages = [{"role": "user", "content": [{"type": "image"}] * len(pictures) + [{"type": "text", "text": "Hi"}]}]
    images = [Image.fromarray(picture) for picture in pictures] or None
    return agent_loop_row(processor, messages, images, processor.tokenizer.encode(" red"))


def _patch_squares(grid_thw: torch.Tensor, merge: int) -> list[tuple[int, int]]:
    """(row, column) of each pixel_values row's patch in the picture: merge windows row-major, then their patches."""
    _, grid_h, grid_w = (int(v) for v in grid_thw)
    squares = []
    for window_y in range(grid_h // merge):
        for window_x in range(grid_w // merge):
            for y in range(merge):
                for x in range(merge):
                    squares.append((window_y * merge + y, window_x * merge + x))
    return squares


def _processed(processor, pictures: list[np.ndarray]) -> torch.Tensor:
    """pixel_values of float pictures in [0, 1] (no rescale), through the family's image processor."""
    return processor.image_processor(images=pictures, do_rescale=False, return_tensors="pt")["pixel_values"]


def _counterfactual(kind, processor, pictures, seed=SEED, step=STEP):
    spec = vision_block_spec(processor, processor.config)
    row = _sample(processor, pictures)
    batch, rows = counterfactual_batch(kind, spec, rows_to_samples([row]), seed, step)
    assert rows == [0]
    return row, batch["multi_modal_inputs"][0]["pixel_values"]


def _rows_per_picture(row) -> list[tuple[int, torch.Tensor]]:
    """(first row, grid_thw) of each picture's rows in the sample's pixel_values."""
    spans, start = [], 0
    for grid in row["multi_modal_inputs"]["image_grid_thw"]:
        spans.append((start, grid))
        start += int(grid.prod())
    return spans


@pytest.mark.parametrize("kind,fill", [("black_patches", "black"), ("mask_patches", "mean")])
@pytest.mark.parametrize("family", PIXEL_FAMILIES)
def test_patch_counterfactual_equals_the_processed_picture_with_those_patches_filled(kind, fill, family, processors):
    processor = processors[family]
    image_processor = processor.image_processor
    pictures = [_picture(processor, 0), _picture(processor, 1)]  # two images in one prompt
    row, counterfactual = _counterfactual(kind, processor, pictures)
    original = row["multi_modal_inputs"]["pixel_values"]
    changed = (counterfactual != original).any(dim=1)
    # Patches are drawn independently (p = 0.5 / 0.6 of 24 + 24 patches): some changed, some kept.
    assert 0 < int(changed.sum()) < len(changed)
    colour = np.zeros(3) if fill == "black" else np.array(image_processor.image_mean, dtype=np.float64)
    patch = image_processor.patch_size
    expected = []
    for (start, grid), picture in zip(_rows_per_picture(row), pictures, strict=True):
        filled = picture.astype(np.float64) / 255
        for index, (y, x) in enumerate(_patch_squares(grid, image_processor.merge_size)):
            if changed[start + index]:
                filled[y * patch : (y + 1) * patch, x * patch : (x + 1) * patch] = colour
        expected.append(filled.astype(np.float32))
    torch.testing.assert_close(counterfactual, _processed(processor, expected), rtol=0, atol=1e-5)
    # And the unchanged picture through the same path is the stored one: the comparison above can fail.
    reference = _processed(processor, [(p.astype(np.float64) / 255).astype(np.float32) for p in pictures])
    torch.testing.assert_close(original, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", PIXEL_FAMILIES)
def test_gaussian_noise_is_noise_on_the_picture(family, processors):
    processor = processors[family]
    image_processor = processor.image_processor
    picture = _picture(processor)
    row, counterfactual = _counterfactual("gaussian_noise", processor, [picture])
    original = row["multi_modal_inputs"]["pixel_values"]
    patch, frames = image_processor.patch_size, image_processor.temporal_patch_size
    noise = (counterfactual - original).view(len(original), 3, frames, patch, patch)
    # One draw per pixel of the picture, shared by its temporal copies, of standard deviation σ (normalised units).
    torch.testing.assert_close(noise[:, :, 0], noise[:, :, 1], rtol=0, atol=1e-5)
    assert abs(float(noise[:, :, 0].std()) - GAUSSIAN_NOISE_STD) < 0.05 * GAUSSIAN_NOISE_STD
    # The noisy picture, processed from scratch: noise of σ·std_c on the [0, 1] pixels of channel c.
    noisy = picture.astype(np.float64) / 255
    std = np.array(image_processor.image_std, dtype=np.float64)
    [(_, grid)] = _rows_per_picture(row)
    for index, (y, x) in enumerate(_patch_squares(grid, image_processor.merge_size)):
        square = noise[index, :, 0].double().permute(1, 2, 0).numpy()  # (p, p, C)
        noisy[y * patch : (y + 1) * patch, x * patch : (x + 1) * patch] += square * std
    torch.testing.assert_close(counterfactual, _processed(processor, [noisy.astype(np.float32)]), rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind", ["black_patches", "mask_patches", "gaussian_noise"])
def test_pixel_counterfactuals_are_deterministic_per_sample_and_step(kind, processors):
    processor = processors["qwen2_5_vl"]
    pictures = [_picture(processor)]
    _, first = _counterfactual(kind, processor, pictures)
    _, again = _counterfactual(kind, processor, pictures)
    assert torch.equal(first, again)
    for seed, step in ((SEED, STEP + 1), (SEED + 1, STEP)):
        _, other = _counterfactual(kind, processor, pictures, seed=seed, step=step)
        assert not torch.equal(first, other)
    # Another picture, same seed and step: its own draw (the patches changed are not the same ones).
    row_a, a = _counterfactual(kind, processor, [_picture(processor, 5)])
    row_b, b = _counterfactual(kind, processor, [_picture(processor, 6)])
    changed_a = a != row_a["multi_modal_inputs"]["pixel_values"]
    changed_b = b != row_b["multi_modal_inputs"]["pixel_values"]
    assert not torch.equal(changed_a.any(1), changed_b.any(1)) or kind == "gaussian_noise"


@pytest.mark.parametrize("kind", ["black_patches", "mask_patches", "gaussian_noise"])
def test_text_only_samples_are_left_out_and_videos_refused(kind, processors):
    processor = processors["qwen3_vl"]
    spec = vision_block_spec(processor, processor.config)
    rows = [_sample(processor, []), _sample(processor, [_picture(processor)]), _sample(processor, [])]
    batch, kept = counterfactual_batch(kind, spec, rows_to_samples(rows), SEED, STEP)
    assert kept == [1] and len(batch) == 1
    assert counterfactual_batch(kind, spec, rows_to_samples([rows[0]]), SEED, STEP) == (None, [])
    video = rows[1] | {"prompts": torch.cat([rows[1]["prompts"], torch.tensor([spec.video_token_id])])}
    with pytest.raises(ValueError, match=f"tor.counterfactual={kind} does not support videos"):
        counterfactual_batch(kind, spec, rows_to_samples([video]), SEED, STEP)
