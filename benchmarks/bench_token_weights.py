"""CPU benchmarks of verl_tor.methods.tor, each against a baseline timed in the same run (machines are noisy).

1. `tor_token_weights` on a rollout batch of ~5,000,000 response tokens vs one `torch.topk` (k = 30% of N) over the
   same flattened entropies. Target: the whole weighting in <= 0.5 s on 2 cores.
2. `truncated_entropy` (top-p 0.95) vs veRL's plain entropy (`logsumexp(z) − Σ softmax(z)·z`) at vocabulary
   151,936. Target: <= 1.5x on LM-like (peaked) logits; flat logits (the worst case) are reported too.

Run from the repository root:

    .venv/bin/python -m benchmarks.bench_token_weights [--tokens 5000000] [--positions 512] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch

from verl_tor.methods.tor import ToRConfig, tor_token_weights, truncated_entropy

QWEN_VOCAB = 151_936
MAX_RESPONSE_LENGTH = 2048


def median_seconds(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, process CPU) seconds of each function; the functions alternate within each repeat so drift
    hits all alike. CPU time (all threads) is less sensitive than wall time to other processes on a shared box."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            wall, cpu = time.perf_counter(), time.process_time()
            function()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        name: (statistics.median(wall for wall, _ in samples), statistics.median(cpu for _, cpu in samples))
        for name, samples in times.items()
    }


def rollout_batch(n_tokens: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entropy, sensitivity and response mask `[B, 2048]` holding about `n_tokens` valid tokens.

    Ragged response lengths uniform in [1152, 2048]; ~70% of entropies exactly 0 (as at top-p 0.95), the rest
    log-normal; 20% of samples are text-only (sensitivity exactly 0), the others |N(0, 1)|.
    """
    mean_length = (1152 + MAX_RESPONSE_LENGTH) / 2
    batch = round(n_tokens / mean_length)
    lengths = torch.randint(1152, MAX_RESPONSE_LENGTH + 1, (batch,), generator=generator)
    response_mask = torch.arange(MAX_RESPONSE_LENGTH)[None, :] < lengths[:, None]
    shape = (batch, MAX_RESPONSE_LENGTH)
    entropy = torch.randn(shape, generator=generator).exp()
    entropy[torch.rand(shape, generator=generator) < 0.7] = 0.0
    sensitivity = torch.randn(shape, generator=generator).abs()
    sensitivity[torch.rand(batch, generator=generator) < 0.2] = 0.0
    return entropy, sensitivity, response_mask


def bench_weights(n_tokens: int, repeats: int, generator: torch.Generator) -> dict[str, object]:
    entropy, sensitivity, response_mask = rollout_batch(n_tokens, generator)
    n_valid = int(response_mask.sum())
    flat_entropy = entropy.reshape(-1)
    cfg = ToRConfig()
    seconds = median_seconds(
        {
            "tor_token_weights": lambda: tor_token_weights(entropy, sensitivity, response_mask, cfg),
            "topk": lambda: torch.topk(flat_entropy, int(0.3 * n_valid)),
        },
        repeats,
    )
    return {
        "benchmark": "weights",
        "data": f"{n_valid:,} valid tokens, {tuple(entropy.shape)}",
        "candidate": "tor_token_weights",
        "candidate_s": seconds["tor_token_weights"][0],
        "candidate_cpu_s": seconds["tor_token_weights"][1],
        "baseline": "one torch.topk, k = 30% of N",
        "baseline_s": seconds["topk"][0],
        "baseline_cpu_s": seconds["topk"][1],
        "target": "<= 0.5 s",
    }


def lm_like_logits(positions: int, generator: torch.Generator) -> torch.Tensor:
    """Zipf-shaped rows over random token orders: 70% near-greedy (exponent 4-8), 30% spread (exponent 1.2-2.5)."""
    confident = torch.rand(positions, 1, generator=generator) < 0.7
    exponent = torch.where(
        confident,
        4 + 4 * torch.rand(positions, 1, generator=generator),
        1.2 + 1.3 * torch.rand(positions, 1, generator=generator),
    )
    ranks = torch.stack([torch.randperm(QWEN_VOCAB, generator=generator) for _ in range(positions)]) + 1
    return (-exponent * ranks.float().log() + 0.3 * torch.randn(positions, QWEN_VOCAB, generator=generator)).float()


def verl_entropy(logits: torch.Tensor) -> torch.Tensor:
    """veRL 0.9.1's `entropy_from_logits`."""
    return torch.logsumexp(logits, dim=-1) - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)


def bench_entropy(kind: str, logits: torch.Tensor, top_p: float, repeats: int) -> dict[str, object]:
    fast_path_rows = (torch.softmax(logits, dim=-1).topk(64, dim=-1).values.sum(dim=-1) >= top_p).float().mean()
    seconds = median_seconds(
        {"truncated": lambda: truncated_entropy(logits, top_p), "plain": lambda: verl_entropy(logits)}, repeats
    )
    return {
        "benchmark": f"truncated entropy, {kind}",
        "data": f"{logits.shape[0]} x {logits.shape[1]:,} fp32, {float(fast_path_rows):.0%} rows in top-64",
        "candidate": f"truncated_entropy(top_p={top_p})",
        "candidate_s": seconds["truncated"][0],
        "candidate_cpu_s": seconds["truncated"][1],
        "baseline": "veRL entropy_from_logits",
        "baseline_s": seconds["plain"][0],
        "baseline_cpu_s": seconds["plain"][1],
        "target": "<= 1.5x" if kind == "LM-like" else "(worst case)",
    }


def markdown_table(results: list[dict[str, object]]) -> str:
    lines = [
        "| benchmark | data | candidate | wall s | CPU s | baseline | wall s | CPU s | ratio wall | ratio CPU | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        lines.append(
            f"| {row['benchmark']} | {row['data']} | {row['candidate']} | {row['candidate_s']:.3f} | "
            f"{row['candidate_cpu_s']:.3f} | {row['baseline']} | {row['baseline_s']:.3f} | {row['baseline_cpu_s']:.3f} | "
            f"{row['candidate_s'] / row['baseline_s']:.2f}x | {row['candidate_cpu_s'] / row['baseline_cpu_s']:.2f}x | "
            f"{row['target']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=5_000_000, help="valid response tokens in the weights batch")
    parser.add_argument("--positions", type=int, default=512, help="logit rows for the entropy benchmark")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (the median is reported)")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--out", help="also write the results as JSON to this path")
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    results = [bench_weights(args.tokens, args.repeats, generator)]
    results.append(bench_entropy("LM-like", lm_like_logits(args.positions, generator), args.top_p, args.repeats))
    flat_logits = torch.randn(args.positions, QWEN_VOCAB, generator=generator)
    results.append(bench_entropy("flat", flat_logits, args.top_p, args.repeats))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    print(markdown_table(results))
    if args.out:
        with open(args.out, "w") as file:
            environment = {"torch": torch.__version__, "threads": torch.get_num_threads(), "load": os.getloadavg()[0]}
            json.dump({**environment, "results": results}, file, indent=2)


if __name__ == "__main__":
    main()
