"""Cost of ToR's image-removed pass relative to veRL's old-log-prob pass, through veRL's real engine forward.

Both passes run on the same image-heavy rollout batch (prompts with large images, short responses) in the
actor's inference mode, as in a training step: the old-log-prob pass over the full prompts (veRL's, with the
truncated entropy ToR asks for, and without it for reference), then the image-removed pass over the image
samples. The expected cost of the image-removed pass is about its share of tokens, the "token-ratio bound"
(text + response tokens / all tokens); the vision tower is skipped there, so it can come in below that.

    python -m benchmarks.bench_counterfactual [--batch 16 --image-size 448 --hidden 256 --layers 4 --repeats 3]

Ratios are measured in one run (this machine is noisy); the README keeps the figures.
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
    from verl.utils import hf_processor
    from verl.utils import tensordict_utils as tu

    from verl_tor.engine_truncated_entropy import TRUNCATED_ENTROPY_TOP_P
    from verl_tor.nested import as_list
    from verl_tor.testing.actor_engine import actor_overrides, build_actor_worker
    from verl_tor.testing.rollout_rows import agent_loop_row, image_removed_rows, rows_to_batch
    from verl_tor.testing.tiny_model import build_tiny_qwen25vl

    model_dir = build_tiny_qwen25vl(
        tempfile.mkdtemp(prefix="bench_cf_"), hidden=args.hidden, layers=args.layers, max_pixels=args.image_size**2
    )
    processor = hf_processor(model_dir)
    actor = build_actor_worker(actor_overrides(model_dir, micro_batch_size=args.batch))
    generator = torch.Generator().manual_seed(0)
    rows = []
    for i in range(args.batch):
        pixels = torch.randint(0, 256, (args.image_size, args.image_size, 3), generator=generator, dtype=torch.uint8)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"Question {i}?"}]}]
        response = torch.randint(300, 380, (args.response_tokens,), generator=generator).tolist()
        rows.append(agent_loop_row(processor, messages, [Image.fromarray(pixels.numpy())], response))
    full = rows_to_batch(rows)
    removed, _ = image_removed_rows(processor, rows)

    def timed(batch, **meta) -> float:
        batch = batch.clone()
        tu.assign_non_tensor(batch, temperature=1.0, compute_loss=False, **meta)
        start = time.perf_counter()
        actor.infer_batch(batch)
        return time.perf_counter() - start

    timed(full, calculate_entropy=True)  # warm-up
    old, old_tor, cf = [], [], []
    for _ in range(args.repeats):
        old.append(timed(full, calculate_entropy=True))
        old_tor.append(timed(full, calculate_entropy=True, **{TRUNCATED_ENTROPY_TOP_P: 0.95}))
        cf.append(timed(removed, calculate_entropy=False))
    all_tokens = sum(len(ids) for ids in as_list(full["input_ids"]))
    kept_tokens = sum(len(ids) for ids in as_list(removed["input_ids"]))
    figures = {
        "batch": args.batch,
        "image_size": args.image_size,
        "tokens_per_sample": all_tokens / args.batch,
        "old_log_prob_s": statistics.median(old),
        "old_log_prob_with_truncated_entropy_s": statistics.median(old_tor),
        "image_removed_s": statistics.median(cf),
        "token_ratio_bound": kept_tokens / all_tokens,
    }
    figures["image_removed_over_old"] = figures["image_removed_s"] / figures["old_log_prob_s"]
    figures["truncated_entropy_overhead"] = figures["old_log_prob_with_truncated_entropy_s"] / figures["old_log_prob_s"]
    print("| measure | value |\n|---|---|")
    for key, value in figures.items():
        print(f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
