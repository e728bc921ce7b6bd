"""Synthetic colour data in veRL's RL format, and its reward; the CPU override list and its CLI."""

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from verl_tor.testing.colour_reward import compute_score
from verl_tor.testing.cpu_overrides import cpu_env, cpu_overrides
from verl_tor.testing.synthetic_data import COLOURS, IMAGE_SIZE, write_dataset


def test_rows_follow_verls_rl_schema(tmp_path):
    train, val = write_dataset(
        str(tmp_path), train=40, val=4, seed=1, text_only_fraction=0.25, multi_image_fraction=0.25
    )
    rows = pd.read_parquet(train)
    assert len(rows) == 40 and len(pd.read_parquet(val)) == 4
    assert set(rows.columns) >= {"data_source", "prompt", "images", "ability", "reward_model", "extra_info"}
    kinds = set()
    for _, row in rows.iterrows():
        kind, colour = row["extra_info"]["kind"], row["reward_model"]["ground_truth"]
        kinds.add(kind)
        assert row["reward_model"]["style"] == "rule" and colour in COLOURS
        (message,) = row["prompt"]
        assert message["role"] == "user"
        assert (
            message["content"].count("<image>") == len(row["images"]) == {"image": 1, "multi_image": 2, "text": 0}[kind]
        )
        for image in row["images"]:
            pixels = np.asarray(Image.open(io.BytesIO(image["bytes"])), dtype=np.int16)
            assert pixels.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
            assert np.abs(pixels.mean(axis=(0, 1)) - COLOURS[colour]).max() < 5  # solid colour plus jitter
            assert pixels.std() > 0
    assert kinds == {"image", "text", "multi_image"}


def test_same_seed_same_data(tmp_path):
    first, _ = write_dataset(str(tmp_path / "a"), train=8, val=1, seed=3)
    second, _ = write_dataset(str(tmp_path / "b"), train=8, val=1, seed=3)
    pd.testing.assert_frame_equal(pd.read_parquet(first), pd.read_parquet(second))


@pytest.mark.parametrize(
    ("response", "score"),
    [
        ("red", 1.0),
        (" Red.", 1.0),
        ("red red", 1.0),
        ("blue", 0.0),
        ("red blue", 0.0),
        ("red or white", 0.0),
        ("", 0.0),
    ],
)
def test_reward_names_exactly_the_right_colour(response, score):
    assert compute_score("verl_tor/colour", response, "red") == score


def test_override_cli_prints_the_list(tmp_path):
    args = ["--model", "M", "--data", str(tmp_path), "--out", "O", "--steps", "5"]
    command = [sys.executable, "-m", "verl_tor.testing.cpu_overrides"]
    printed = subprocess.run(command + args, capture_output=True, text=True, check=True).stdout.splitlines()
    assert printed == cpu_overrides("M", str(tmp_path), "O", steps=5)
    assert "actor_rollout_ref.rollout.name=hf" in printed and "trainer.total_training_steps=5" in printed
    env = subprocess.run(command + ["--env"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert env == [f"{name}={value}" for name, value in cpu_env().items()]
    assert "VERL_PLATFORM=cpu" in env


def test_block_jitter_is_one_offset_per_block_within_the_jitter():
    from verl_tor.testing.synthetic_data import JITTER, colour_image_png

    png = colour_image_png("blue", np.random.default_rng(0), size=56, block=7)
    pixels = np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)
    blocks = pixels.reshape(8, 7, 8, 7, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()
    offsets = blocks[:, 0, :, 0] - np.array(COLOURS["blue"])
    assert np.abs(offsets).max() <= JITTER and len(np.unique(offsets.reshape(-1, 3), axis=0)) > 32
    # Per pixel (the default) the same generator state gives the same picture as before blocks existed.
    rng, reference = np.random.default_rng(1), np.random.default_rng(1)
    noise = reference.integers(-JITTER, JITTER + 1, size=(56, 56, 3), dtype=np.int16)
    expected = np.clip(np.array(COLOURS["red"]) + noise, 0, 255)
    assert (np.asarray(Image.open(io.BytesIO(colour_image_png("red", rng)))) == expected).all()
    with pytest.raises(ValueError):
        colour_image_png("red", rng, size=56, block=5)
