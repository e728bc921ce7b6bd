"""Cost of each counterfactual pass relative to veRL's old-log-prob pass, through veRL's real engine forward.

All passes run on the same image-heavy rollout batch (prompts with large images, short responses) in the actor's
inference mode, as in a training step: the old-log-prob pass over the full prompts (veRL's, with the truncated
entropy ToR asks for, and without it for reference), then each counterfactual's pass over the image samples:

- ``remove_image`` and ``mask_image_attention`` forward the text and response tokens only (no vision tower): the
  expected cost is about their share of tokens, the "token-ratio bound";
- ``black_patches``, ``mask_patches`` and ``gaussian_noise`` forward every token and run the vision tower again on
  the changed pixels: the expected cost is about one old-log-prob pass.

Building each batch on the driver (re-tokenizing, hashing the pixels for the seed, changing them) is timed apart.

    python -m benchmarks.bench_counterfactual [--family qwen2_5_vl --batch 16 --image-size 448 --hidden 256
                                               --layers 4 --repeats 3]

Each ratio is the median over repeats of a forward divided by the old-log-prob forward run just before it
(a shared machine's load changes between, not within, such pairs); docs/counterfactuals.md keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("VERL_PLATFORM", "cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="qwen2_5_vl", help="tiny model family (verl_tor.testing.tiny_model)")
    parser.add_argument("--batch", type=int, default=16, help="samples (all with one image)")
    parser.add_argument("--image-size", type=int, default=448, help="square image side in pixels")
    parser.add_argument("--response-tokens", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()

    import torch
    from PIL import Image
    from tqdm import tqdm
    from verl.utils import hf_processor
    from verl.utils import tensordict_utils as tu

    from verl_tor.counterfactual import COUNTERFACTUALS, Samples, counterfactual_batch
    from verl_tor.counterfactual.families import vision_block_spec
    from verl_tor.engine_truncated_entropy import TRUNCATED_ENTROPY_TOP_P
    from verl_tor.nested import as_list
    from verl_tor.testing.actor_engine import actor_overrides, build_actor_worker
    from verl_tor.testing.rollout_rows import agent_loop_row, rows_to_batch
    from verl_tor.testing.tiny_model import build_tiny_model

    model_dir = build_tiny_model(
        tempfile.mkdtemp(prefix="bench_cf_"),
        args.family,
        hidden=args.hidden,
        layers=args.layers,
        max_pixels=args.image_size**2,
    )
    processor = hf_processor(model_dir)
    actor = build_actor_worker(actor_overrides(model_dir, micro_batch_size=args.batch))
    generator = torch.Generator().manual_seed(0)
    rows = []
    for i in range(args.batch):
        pixels = torch.randint(0, 256, (args.image_size, args.image_size, 3), generator=generator, dtype=torch.uint8)
        # The question after a newline: remove_image re-tokenizes across the deleted block (its real cost).
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"\nQuestion {i}?"}]}]
        response = torch.randint(300, 380, (args.response_tokens,), generator=generator).tolist()
        rows.append(agent_loop_row(processor, messages, [Image.fromarray(pixels.numpy())], response))
    full = rows_to_batch(rows)
    spec = vision_block_spec(processor, processor.config)
    samples = Samples(
        prompts=[row["prompts"] for row in rows],
        responses=[row["responses"] for row in rows],
        response_masks=[row["response_mask"] for row in rows],
        position_ids=[row["position_ids"] for row in rows],
        multi_modal_inputs=[row["multi_modal_inputs"] for row in rows],
    )

    def timed(batch, **meta) -> float:
        batch = batch.clone()
        tu.assign_non_tensor(batch, temperature=1.0, compute_loss=False, **meta)
        start = time.perf_counter()
        actor.infer_batch(batch)
        return time.perf_counter() - start

    def paired_ratio(batch, **meta) -> float:
        """Median over repeats of (``batch``'s forward / the old-log-prob forward run just before it): each
        ratio compares two forwards a second apart, so a load change on a shared machine hits both."""
        ratios = []
        for _ in range(args.repeats):
            old_s = timed(full, calculate_entropy=True)
            ratios.append(timed(batch, **meta) / old_s)
        return statistics.median(ratios)

    timed(full, calculate_entropy=True)  # warm-up
    all_tokens = sum(len(ids) for ids in as_list(full["input_ids"]))
    old_s = statistics.median(timed(full, calculate_entropy=True) for _ in range(args.repeats))
    figures = {
        "family": args.family,
        "batch": args.batch,
        "image_size": args.image_size,
        "tokens_per_sample": all_tokens / args.batch,
        "old_log_prob_s": old_s,
        "truncated_entropy_overhead": paired_ratio(full, calculate_entropy=True, **{TRUNCATED_ENTROPY_TOP_P: 0.95}),
    }
    for kind in tqdm(COUNTERFACTUALS, desc="counterfactuals"):
        start = time.perf_counter()
        batch, _ = counterfactual_batch(kind, spec, samples, seed=0, step=1)
        build_s = time.perf_counter() - start
        figures[f"{kind}_over_old"] = paired_ratio(batch, calculate_entropy=False)
        figures[f"{kind}_token_ratio"] = sum(len(ids) for ids in as_list(batch["input_ids"])) / all_tokens
        figures[f"{kind}_build_over_old"] = build_s / old_s
    print("| measure | value |\n|---|---|")
    for key, value in figures.items():
        print(f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
