"""CPU benchmarks of verl_tor.methods, each against a baseline timed in the same run (machines are noisy).

1. Every registered method's weighting (`verl_tor.methods.weights.token_weights`: perception score from the two
   log-probs, selection, weights, metrics) on a rollout batch of ~5,000,000 response tokens, against ToR's in the
   same run; ToR's also against one `torch.topk` (k = 30% of N) over the same flattened entropies. Target: ToR's
   whole weighting in <= 0.5 s on 2 cores.
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

from verl_tor.methods.config import TokenCreditConfig
from verl_tor.methods.registry import METHODS
from verl_tor.methods.scores import truncated_entropy
from verl_tor.methods.weights import token_weights

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


def rollout_batch(n_tokens: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The scores of a rollout batch `[B, 2048]` holding about `n_tokens` valid tokens, as `token_weights` takes them.

    Ragged response lengths uniform in [1152, 2048]; ~70% of entropies exactly 0 (as at top-p 0.95), the rest
    log-normal; log-probs −|N(0, 1)|, their counterfactual log-probs shifted by N(0, 1); 20% of samples text-only.
    """
    mean_length = (1152 + MAX_RESPONSE_LENGTH) / 2
    batch = round(n_tokens / mean_length)
    lengths = torch.randint(1152, MAX_RESPONSE_LENGTH + 1, (batch,), generator=generator)
    response_mask = torch.arange(MAX_RESPONSE_LENGTH)[None, :] < lengths[:, None]
    shape = (batch, MAX_RESPONSE_LENGTH)
    entropy = torch.randn(shape, generator=generator).exp()
    entropy[torch.rand(shape, generator=generator) < 0.7] = 0.0
    log_probs = -torch.randn(shape, generator=generator).abs()
    counterfactual = log_probs + torch.randn(shape, generator=generator)
    has_image = torch.rand(batch, generator=generator) >= 0.2
    return {"response_mask": response_mask, "reasoning_score": entropy, "log_probs": log_probs,
            "counterfactual_log_probs": counterfactual, "has_image": has_image}  # fmt: skip


def bench_weights(n_tokens: int, repeats: int, generator: torch.Generator) -> list[dict[str, object]]:
    """One row per method against ToR's weighting, and ToR's against one top-k."""
    scores = rollout_batch(n_tokens, generator)
    mask = scores.pop("response_mask")
    n_valid = int(mask.sum())
    flat_entropy = scores["reasoning_score"].reshape(-1)
    configs = {name: TokenCreditConfig.from_mapping({"method": name}) for name in METHODS}
    functions = {name: (lambda cfg=cfg: token_weights(cfg, mask, **scores)) for name, cfg in configs.items()}
    seconds = median_seconds({**functions, "topk": lambda: torch.topk(flat_entropy, int(0.3 * n_valid))}, repeats)
    data = f"{n_valid:,} valid tokens, {tuple(mask.shape)}"
    rows = []
    for name in ["tor", *(name for name in METHODS if name != "tor")]:
        baseline = "topk" if name == "tor" else "tor"
        rows.append(
            {
                "benchmark": f"weights, {name}",
                "data": data,
                "candidate": f"token_weights({name})",
                "candidate_s": seconds[name][0],
                "candidate_cpu_s": seconds[name][1],
                "baseline": "one torch.topk, k = 30% of N" if name == "tor" else "token_weights(tor)",
                "baseline_s": seconds[baseline][0],
                "baseline_cpu_s": seconds[baseline][1],
                "target": "<= 0.5 s" if name == "tor" else "(reported)",
            }
        )
    return rows


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
    results = bench_weights(args.tokens, args.repeats, generator)
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
