"""Synthetic colour-naming data in veRL's RL parquet format, for CPU runs and tests.

Each image row shows one solid-colour 56x56 picture (4 Qwen2.5-VL image tokens) with a small random jitter per
pixel value; the question is "What colour is the image? Answer with one word." and the answer is one of
:data:`COLOURS`. Optional rows for ToR's mixed batches: text-only rows (the colour is named in the question, no
image) and multi-image rows (two pictures of the same colour). Score responses with
:func:`verl_tor.testing.colour_reward.compute_score`.

    python -m verl_tor.testing.synthetic_data --out DIR --train N --val M --seed S \
        [--text-only-fraction F] [--multi-image-fraction F]

writes ``DIR/train.parquet`` and ``DIR/val.parquet``.
"""

from __future__ import annotations

import argparse
import io
import os

import numpy as np

DATA_SOURCE = "verl_tor/colour"
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (230, 220, 40),
    "purple": (140, 50, 180),
    "orange": (240, 140, 20),
}
IMAGE_SIZE = 56
JITTER = 20
QUESTION = "What colour is the image? Answer with one word."
MULTI_IMAGE_QUESTION = "What colour are the images? Answer with one word."
TEXT_QUESTION = "The colour is {colour}. What colour is it? Answer with one word."


def colour_image_png(colour: str, rng: np.random.Generator, size: int = IMAGE_SIZE, block: int = 1) -> bytes:
    """PNG bytes of a ``size`` x ``size`` picture of ``colour`` with jitter of up to +-JITTER per ``block`` x
    ``block`` square of pixels (``block`` divides ``size``; 1: per pixel)."""
    from PIL import Image

    if size % block:
        raise ValueError(f"block {block} does not divide the picture size {size}")
    base = np.array(COLOURS[colour], dtype=np.int16)
    blocks = rng.integers(-JITTER, JITTER + 1, size=(size // block, size // block, 3), dtype=np.int16)
    pixels = base + blocks.repeat(block, axis=0).repeat(block, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_rows(
    n: int, split: str, rng: np.random.Generator, text_only_fraction: float = 0.0, multi_image_fraction: float = 0.0
) -> list[dict]:
    """``n`` rows of veRL's RL schema; colours are drawn uniformly, row kinds by the given fractions."""
    if text_only_fraction < 0 or multi_image_fraction < 0 or text_only_fraction + multi_image_fraction > 1:
        raise ValueError("text-only and multi-image fractions must be >= 0 and sum to at most 1")
    names = list(COLOURS)
    kinds = rng.choice(
        ["image", "text", "multi_image"],
        size=n,
        p=[1 - text_only_fraction - multi_image_fraction, text_only_fraction, multi_image_fraction],
    )
    rows = []
    for index, kind in enumerate(kinds):
        colour = names[int(rng.integers(len(names)))]
        if kind == "text":
            content, images = TEXT_QUESTION.format(colour=colour), []
        elif kind == "multi_image":
            content = "<image><image>" + MULTI_IMAGE_QUESTION
            images = [{"bytes": colour_image_png(colour, rng)} for _ in range(2)]
        else:
            content, images = "<image>" + QUESTION, [{"bytes": colour_image_png(colour, rng)}]
        rows.append(
            {
                "data_source": DATA_SOURCE,
                "prompt": [{"role": "user", "content": content}],
                "images": images,
                "ability": "perception",
                "reward_model": {"style": "rule", "ground_truth": colour},
                "extra_info": {"split": split, "index": index, "kind": str(kind), "colour": colour},
            }
        )
    return rows


def write_dataset(
    out_dir: str,
    train: int,
    val: int,
    seed: int = 0,
    text_only_fraction: float = 0.0,
    multi_image_fraction: float = 0.0,
) -> tuple[str, str]:
    """Write ``train.parquet`` and ``val.parquet`` to ``out_dir``; returns their paths."""
    import pandas as pd

    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for split, n in (("train", train), ("val", val)):
        path = os.path.join(out_dir, f"{split}.parquet")
        pd.DataFrame(make_rows(n, split, rng, text_only_fraction, multi_image_fraction)).to_parquet(path)
        paths.append(path)
    return paths[0], paths[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.testing.synthetic_data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--train", type=int, default=64, help="training rows")
    parser.add_argument("--val", type=int, default=16, help="validation rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text-only-fraction", type=float, default=0.0)
    parser.add_argument("--multi-image-fraction", type=float, default=0.0)
    args = parser.parse_args()
    paths = write_dataset(args.out, args.train, args.val, args.seed, args.text_only_fraction, args.multi_image_fraction)
    print("\n".join(paths))


if __name__ == "__main__":
    main()
