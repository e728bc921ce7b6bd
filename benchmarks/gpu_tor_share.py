"""ToR's cost on one GPU, as ratios against veRL's own work in the same run: needs only torch and transformers.

ToR adds two things to a training step's old-log-prob forward (see docs/benchmarks.md):

1. the image-removed forward (Eq. 8): the same samples with every vision block deleted from the prompt, no pixels,
   so no vision tower and ~1,000 fewer tokens per image; timed against the image-present forward of the same batch;
2. the truncated (top-p) entropy (Eq. 5) of every response position, computed by the engine's own chunked function
   (``verl_tor.engine_truncated_entropy.truncated_entropy_of_rows``) on the bf16 logits, timed against veRL's plain
   entropy formula ``logsumexp(z) − Σ softmax(z)·z`` (veRL 0.9.1's ``entropy_from_logits``, written out below so
   that veRL need not be installed) on the same logits, at Qwen2.5/3-VL's V = 151,936 and Qwen3.5's V = 248,320.

Each is timed as the median of ``--repeats`` runs after ``--warmup`` runs (``torch.cuda.synchronize`` around each;
the two sides alternate within a repeat), with the peak memory of each above what was allocated before it
(``torch.cuda.max_memory_allocated``; the forward's includes its logits). The models are Qwen2.5-VL-7B and
Qwen3-VL-8B built from their released config.json numbers (below) with random weights, in bf16, with PyTorch's
``sdpa`` attention; no weights are downloaded and no network is used. The batch is shaped like the paper's: each
sample one image of ``--visual-tokens`` visual tokens (a square grid), ``--text-tokens`` prompt text tokens and
``--response-tokens`` response tokens. Random weights change no cost: every shape is the released model's.

Position ids are passed as plain ``arange`` rows (the M-RoPE values do not change the cost, and so the timing does
not depend on the transformers version's rope-index code).

    python benchmarks/gpu_tor_share.py [--json results.json]     # one GPU, ~2-3 min on an H200
    python benchmarks/gpu_tor_share.py --quick                    # CPU, tiny widths and depths, seconds

Needs torch >= 2.4 and transformers >= 4.57 (Qwen3-VL; a model whose class is missing is skipped and listed).
Prints the JSON report, then the markdown tables.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: import this checkout's verl_tor, installed or not
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verl_tor.engine_truncated_entropy import truncated_entropy_of_rows  # noqa: E402

TOP_P = 0.95
ENTROPY_VOCABS = (151_936, 248_320)  # Qwen2.5-VL / Qwen3-VL's tokenizer; Qwen3.5's
FAST_PATH_TOP_K = 64  # the top-k `truncated_entropy` reads first (reported: the share of rows it suffices for)

# The released config.json numbers (Qwen/Qwen2.5-VL-7B-Instruct, Qwen/Qwen3-VL-8B-Instruct on the Hugging Face hub).
QWEN2_5_VL_7B: dict[str, Any] = {
    "model_type": "qwen2_5_vl",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 152064,
    "tie_word_embeddings": False,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_config": {
        "depth": 32,
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_channels": 3,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
    },
}
QWEN3_VL_8B: dict[str, Any] = {
    "model_type": "qwen3_vl",
    "tie_word_embeddings": False,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "text_config": {
        "attention_bias": False,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "max_position_embeddings": 262144,
        "num_attention_heads": 32,
        "num_hidden_layers": 36,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"mrope_interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"},
        "rope_theta": 5000000,
        "tie_word_embeddings": False,
        "vocab_size": 151936,
    },
    "vision_config": {
        "deepstack_visual_indexes": [8, 16, 24],
        "depth": 27,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_size": 1152,
        "in_channels": 3,
        "intermediate_size": 4304,
        "num_heads": 16,
        "num_position_embeddings": 2304,
        "out_hidden_size": 4096,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
}
MODELS = {"Qwen2.5-VL-7B": QWEN2_5_VL_7B, "Qwen3-VL-8B": QWEN3_VL_8B}

# --quick: the same architectures and vocabularies, tiny widths and depths (head_dim 16: M-RoPE sections sum to 8).
_TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
_TINY_VISION = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64}
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "Qwen2.5-VL-7B": {
        **_TINY_TEXT,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "vision_config": {**_TINY_VISION, "fullatt_block_indexes": [1]},
    },
    "Qwen3-VL-8B": {
        "text_config": {**_TINY_TEXT, "head_dim": 16, "rope_scaling": {"mrope_section": [4, 2, 2]}},
        "vision_config": {**_TINY_VISION, "deepstack_visual_indexes": [0]},
    },
}


@dataclass
class Settings:
    """What one run measures (the defaults: one H200; ``quick()``: a CPU in seconds)."""

    device: str = "cuda"
    samples: int = 8
    visual_tokens: int = 1024
    text_tokens: int = 64
    response_tokens: int = 512
    repeats: int = 5
    warmup: int = 2
    tiny: bool = False

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            device="cpu", samples=2, visual_tokens=16, text_tokens=8, response_tokens=8, repeats=2, warmup=1, tiny=True
        )


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied, nested dicts merged key by key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def build_config(name: str, tiny: bool):
    """The transformers config of model ``name`` (the released numbers, or tiny widths and depths), sdpa attention."""
    from transformers import AutoConfig

    numbers = merge(MODELS[name], TINY_OVERRIDES[name]) if tiny else copy.deepcopy(MODELS[name])
    config = AutoConfig.for_model(numbers.pop("model_type"), **numbers)
    config._attn_implementation = "sdpa"
    return config


def build_model(name: str, settings: Settings) -> torch.nn.Module:
    """Random-initialised model ``name`` in bf16 on the settings' device, in eval mode."""
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    with torch.device(settings.device):
        model = AutoModelForImageTextToText.from_config(
            build_config(name, settings.tiny), dtype=torch.bfloat16, attn_implementation="sdpa"
        )
    return model.eval()


def image_batch(config, settings: Settings, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], int]:
    """The image-present forward's inputs: per sample ``[text | vision_start, image pads, vision_end | response]``.

    Returns:
        ``(inputs, block_start)``: keyword inputs of the model (``input_ids`` ``[B, L]``, ``pixel_values``
        ``[B·patches, C·T·P·P]``, ``image_grid_thw`` ``[B, 3]``, ``position_ids`` ``[3, B, L]``) and the index of the
        vision block's first token.
    """
    vision = config.vision_config
    merge_size = vision.spatial_merge_size
    side = math.isqrt(settings.visual_tokens)
    if side * side != settings.visual_tokens:
        raise ValueError(f"--visual-tokens must be a square (a square image), got {settings.visual_tokens}")
    grid = (1, side * merge_size, side * merge_size)  # patches: one frame, merged 2 x 2 into visual tokens
    patch_features = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    ordinary = config.vision_start_token_id  # ordinary tokens come first in the Qwen vocabularies
    rows = []
    for _ in range(settings.samples):
        text = torch.randint(0, ordinary, (settings.text_tokens,), generator=generator)
        response = torch.randint(0, ordinary, (settings.response_tokens,), generator=generator)
        block = [config.vision_start_token_id, *[config.image_token_id] * settings.visual_tokens]
        block.append(config.vision_end_token_id)
        rows.append(torch.cat([text, torch.tensor(block), response]))
    input_ids = torch.stack(rows)
    pixels = torch.randn(settings.samples * grid[1] * grid[2], patch_features, generator=generator)
    inputs = {
        "input_ids": input_ids,
        "pixel_values": pixels.to(torch.bfloat16),
        "image_grid_thw": torch.tensor([grid] * settings.samples),
        "position_ids": plain_positions(input_ids),
    }
    return {key: value.to(settings.device) for key, value in inputs.items()}, settings.text_tokens


def image_removed_inputs(inputs: dict[str, torch.Tensor], block_start: int, block_length: int) -> dict:
    """ToR's image-removed input of the same samples: the vision block deleted, no pixels (Eq. 8's ∅)."""
    ids = inputs["input_ids"]
    kept = torch.cat([ids[:, :block_start], ids[:, block_start + block_length :]], dim=1)
    return {"input_ids": kept, "position_ids": plain_positions(kept)}


def plain_positions(input_ids: torch.Tensor) -> torch.Tensor:
    """``[3, B, L]`` M-RoPE position ids, every row ``arange(L)`` (values do not change the cost)."""
    batch, length = input_ids.shape
    return torch.arange(length, device=input_ids.device).expand(3, batch, length).contiguous()


def lm_like_logits(rows: int, vocab: int, generator: torch.Generator) -> torch.Tensor:
    """``[rows, vocab]`` bf16 Zipf-shaped rows over random token orders: 70% near-greedy (exponent 4-8), 30% spread
    (exponent 1.2-2.5), plus N(0, 0.3) noise (as ``benchmarks/bench_token_weights.py``'s LM-like logits), on the
    generator's device."""
    device = generator.device
    out = torch.empty(rows, vocab, dtype=torch.bfloat16, device=device)
    for start in range(0, rows, 256):  # the random ranks are int64: built a chunk of rows at a time
        n = min(256, rows - start)
        uniform = torch.rand(n, 3, generator=generator, device=device)
        exponent = torch.where(uniform[:, :1] < 0.7, 4 + 4 * uniform[:, 1:2], 1.2 + 1.3 * uniform[:, 2:])
        ranks = torch.rand(n, vocab, generator=generator, device=device).argsort(dim=-1).add_(1).float()
        noise = torch.randn(n, vocab, generator=generator, device=device).mul_(0.3)
        out[start : start + n] = noise.sub_(exponent * ranks.log_())
    return out


def flat_logits(rows: int, vocab: int, generator: torch.Generator) -> torch.Tensor:
    """``[rows, vocab]`` bf16 N(0, 1) logits on the generator's device: no row's top-p set ends within its top 64
    (the worst case)."""
    return torch.randn(rows, vocab, generator=generator, device=generator.device).to(torch.bfloat16)


def plain_entropy(logits: torch.Tensor) -> torch.Tensor:
    """veRL 0.9.1's ``entropy_from_logits``: ``logsumexp(z) − Σ softmax(z)·z`` in the logits' dtype. ``[N, V]`` →
    ``[N]``."""
    return torch.logsumexp(logits, dim=-1) - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_bytes(function: Callable[[], object], device: str) -> int | None:
    """Peak GPU memory of one call above what was allocated before it (None off the GPU)."""
    if not device.startswith("cuda"):
        return None
    gc.collect()
    synchronize(device)
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    result = function()
    synchronize(device)
    del result
    return torch.cuda.max_memory_allocated() - before


def measure(functions: dict[str, Callable[[], object]], settings: Settings) -> dict[str, dict[str, float | None]]:
    """Median seconds of each function over ``repeats`` runs after ``warmup`` runs, alternating within each repeat
    (drift hits all alike), and each one's peak extra memory."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for repeat in range(settings.warmup + settings.repeats):
        for name, function in functions.items():
            synchronize(settings.device)
            start = time.perf_counter()
            result = function()
            synchronize(settings.device)
            elapsed = time.perf_counter() - start
            del result
            if repeat >= settings.warmup:
                times[name].append(elapsed)
    return {
        name: {"seconds": statistics.median(times[name]), "peak_bytes": peak_bytes(function, settings.device)}
        for name, function in functions.items()
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``; None where either is unknown (memory off the GPU) or the denominator is not
    positive."""
    return None if numerator is None or denominator is None or denominator <= 0 else numerator / denominator


def logits_of(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The forward of veRL's old-log-prob pass, without gradient: ``[B, L, V]`` logits."""
    with torch.no_grad():
        return model(**inputs, use_cache=False).logits


def vision_tower(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> object:
    """The image-present forward's vision tower alone (patches to visual-token embeddings), without gradient."""
    with torch.no_grad():
        return model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])


def bench_forward(name: str, settings: Settings, generator: torch.Generator) -> dict[str, Any]:
    """The image-removed forward vs the image-present forward of one model on one batch."""
    model = build_model(name, settings)
    inputs, block_start = image_batch(model.config, settings, generator)
    removed = image_removed_inputs(inputs, block_start, settings.visual_tokens + 2)

    result = measure(
        {
            "present": lambda: logits_of(model, inputs),
            "removed": lambda: logits_of(model, removed),
            "vision": lambda: vision_tower(model, inputs),
        },
        settings,
    )
    present, removed_pass, vision = result["present"], result["removed"], result["vision"]
    return {
        "model": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokens_per_sample_present": settings.text_tokens + settings.visual_tokens + 2 + settings.response_tokens,
        "tokens_per_sample_removed": settings.text_tokens + settings.response_tokens,
        "present_s": present["seconds"],
        "removed_s": removed_pass["seconds"],
        "time_ratio": ratio(removed_pass["seconds"], present["seconds"]),
        "vision_s": vision["seconds"],
        # Against the image-present forward less its vision tower: independent of the vision attention's kernel.
        "time_ratio_without_vision": ratio(removed_pass["seconds"], present["seconds"] - vision["seconds"]),
        "present_peak_bytes": present["peak_bytes"],
        "removed_peak_bytes": removed_pass["peak_bytes"],
        "memory_ratio": ratio(removed_pass["peak_bytes"], present["peak_bytes"]),
    }


def bench_entropy(kind: str, logits: torch.Tensor, settings: Settings) -> dict[str, Any]:
    """ToR's truncated entropy (the engine's chunked function, temperature 1) vs veRL's plain entropy formula."""
    ones = torch.ones(logits.shape[0], device=logits.device)
    top = torch.softmax(logits[:256].float(), dim=-1).topk(FAST_PATH_TOP_K, dim=-1).values.sum(dim=-1)
    result = measure(
        {
            "truncated": lambda: truncated_entropy_of_rows(logits, ones, TOP_P),
            "plain": lambda: plain_entropy(logits),
        },
        settings,
    )
    truncated, plain = result["truncated"], result["plain"]
    return {
        "vocab": logits.shape[1],
        "logits": kind,
        "rows": logits.shape[0],
        "rows_within_top_64": float((top >= TOP_P).float().mean()),  # of the first 256 rows
        "truncated_s": truncated["seconds"],
        "plain_s": plain["seconds"],
        "time_ratio": ratio(truncated["seconds"], plain["seconds"]),
        "truncated_peak_bytes": truncated["peak_bytes"],
        "plain_peak_bytes": plain["peak_bytes"],
        "memory_ratio": ratio(truncated["peak_bytes"], plain["peak_bytes"]),
    }


def run(settings: Settings, model_names: list[str]) -> dict[str, Any]:
    """All measurements of one run, as the JSON report."""
    import transformers

    generator = torch.Generator().manual_seed(0)
    logits_generator = torch.Generator(device=settings.device).manual_seed(0)
    forwards, skipped = [], []
    for name in model_names:
        try:
            build_config(name, tiny=True)
        except (KeyError, ValueError) as error:  # transformers too old for this architecture
            skipped.append({"model": name, "reason": f"{type(error).__name__}: {error}"})
            continue
        forwards.append(bench_forward(name, settings, generator))
        gc.collect()  # the model goes before the next one is built
        if settings.device.startswith("cuda"):
            torch.cuda.empty_cache()
    entropies = []
    rows = settings.samples * settings.response_tokens  # the batch's response positions
    for vocab in ENTROPY_VOCABS:
        for kind, make in (("LM-like", lm_like_logits), ("flat", flat_logits)):
            logits = make(rows, vocab, logits_generator)
            entropies.append(bench_entropy(kind, logits, settings))
            del logits
    lm_like = {row["vocab"]: row for row in entropies if row["logits"] == "LM-like"}
    for row in forwards:
        # ToR's additions to the old-log-prob forward: the image-removed forward and the truncated entropy of the
        # same batch's response positions (LM-like logits at Qwen2.5/3-VL's vocabulary).
        row["tor_added_share"] = (row["removed_s"] + lm_like[ENTROPY_VOCABS[0]]["truncated_s"]) / row["present_s"]
    device_name = torch.cuda.get_device_name() if settings.device.startswith("cuda") else platform.processor()
    return {
        "device": device_name or settings.device,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dtype": "bfloat16",
        "attention": "sdpa",
        "top_p": TOP_P,
        "settings": asdict(settings),
        "forward": forwards,
        "entropy": entropies,
        "skipped": skipped,
    }


def _gib(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 2**30:.2f}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def markdown(report: dict[str, Any]) -> str:
    """The report as two markdown tables."""
    settings = report["settings"]
    lines = [
        f"{report['device']}, torch {report['torch']}, transformers {report['transformers']}, bf16, sdpa; "
        f"{settings['samples']} samples x ({settings['text_tokens']} text + {settings['visual_tokens']} visual + 2 "
        f"+ {settings['response_tokens']} response tokens); median of {settings['repeats']} after "
        f"{settings['warmup']} warm-up",
        "",
        "| model | image-present forward s | of which vision tower s | image-removed s | time ratio "
        "| ratio without the vision tower | present peak GiB | removed peak GiB | memory ratio "
        "| ToR added (removed + truncated entropy) / present |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["forward"]:
        lines.append(
            f"| {row['model']} | {row['present_s']:.4f} | {row['vision_s']:.4f} | {row['removed_s']:.4f} | "
            f"{_x(row['time_ratio'])} | {_x(row['time_ratio_without_vision'])} | {_gib(row['present_peak_bytes'])} | "
            f"{_gib(row['removed_peak_bytes'])} | {_x(row['memory_ratio'])} | {_x(row['tor_added_share'])} |"
        )
    lines += [
        "",
        f"| V | logits | rows | rows within top 64 | truncated entropy (top-p {report['top_p']}) s | veRL plain entropy s "
        "| time ratio | truncated peak GiB | plain peak GiB | memory ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["entropy"]:
        lines.append(
            f"| {row['vocab']:,} | {row['logits']} | {row['rows']} | {row['rows_within_top_64']:.0%} | "
            f"{row['truncated_s']:.4f} | {row['plain_s']:.4f} | {_x(row['time_ratio'])} | "
            f"{_gib(row['truncated_peak_bytes'])} | {_gib(row['plain_peak_bytes'])} | {_x(row['memory_ratio'])} |"
        )
    lines += [f"skipped {row['model']}: {row['reason']}" for row in report["skipped"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CPU, tiny widths and depths, small batch: seconds")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--samples", type=int, help="samples in the batch (default 8)")
    parser.add_argument("--visual-tokens", type=int, help="visual tokens per image, a square (default 1024)")
    parser.add_argument("--response-tokens", type=int, help="response tokens per sample (default 512)")
    parser.add_argument("--repeats", type=int, help="timed repeats; the median is reported (default 5)")
    parser.add_argument("--json", help="also write the JSON report to this path")
    args = parser.parse_args(argv)

    settings = Settings.quick() if args.quick else Settings()
    for key in ("samples", "visual_tokens", "response_tokens", "repeats"):
        if getattr(args, key) is not None:
            setattr(settings, key, getattr(args, key))
    if settings.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device visible to torch; use --quick for the CPU check")
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")

    report = run(settings, names)
    print(json.dumps(report, indent=2))
    print()
    print(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
