"""Where ToR's weights land on the demo's responses: per response position (colour word, ``<|im_end|>``).

The demo's responses are a colour word and ``<|im_end|>``. This check samples one rollout batch from a model
folder with plain transformers (the demo's prompts, temperature 1, the vision special tokens banned as in the
``hf`` rollout), scores every response token like the ``tor_sync`` trainer does (top-p entropy of the sampled
distribution; |Δ log π| when the image's vision block is removed from the prompt) and applies
:func:`verl_tor.token_weights.tor_token_weights` with ToR's defaults over the whole batch. It prints, per
response position, the mean scores, how often the token is selected as reasoning / perception token, and its
mean weight; tokens of weight 0 give no gradient.

    python -m verl_tor.demo.tor_positions --model DIR [--prompts 16 --responses 8 --seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from verl_tor.testing.synthetic_data import QUESTION, make_rows
from verl_tor.token_weights import ToRConfig, tor_token_weights, truncated_entropy

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


def _prompt_inputs(processor, image, with_image: bool) -> dict[str, torch.Tensor]:
    """Chat-template inputs of the task's question, with the picture or with its vision block removed."""
    content = [{"type": "image"}, {"type": "text", "text": QUESTION}] if with_image else QUESTION
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    return dict(processor(text=[text], images=[image] if with_image else None, return_tensors="pt"))


@torch.no_grad()
def _response_scores(model, inputs: dict[str, torch.Tensor], response: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Log-probs and raw logits that predict each response token after the prompt ``inputs``."""
    ids = torch.cat([inputs["input_ids"], response[None]], dim=1)
    extra = {key: value for key, value in inputs.items() if key not in ("input_ids", "attention_mask")}
    if "mm_token_type_ids" in extra:  # response tokens are text (type 0)
        extra["mm_token_type_ids"] = torch.nn.functional.pad(extra["mm_token_type_ids"], (0, len(response)))
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits[0].float()
    logits = logits[inputs["input_ids"].shape[1] - 1 : -1]
    return logits.log_softmax(-1).gather(-1, response[:, None])[:, 0], logits


def _right_padded(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    return torch.stack([torch.nn.functional.pad(row, (0, width - len(row))) for row in rows])


def position_report(model_dir: str, prompts: int = 16, responses: int = 8, seed: int = 0) -> str:
    """Sample ``prompts`` x ``responses`` answers and summarise ToR's scores and weights per response position."""
    import io

    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = processor.tokenizer
    banned = [[tokenizer.convert_tokens_to_ids(token)] for token in VISION_TOKENS]
    rows = make_rows(prompts, "check", np.random.default_rng(seed))

    entropy, sensitivity, tokens = [], [], []
    for row in rows:
        image = Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")
        with_image, without = _prompt_inputs(processor, image, True), _prompt_inputs(processor, image, False)
        for _ in range(responses):
            output = model.generate(
                **with_image,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=4,
                bad_words_ids=banned,
            )
            response = output[0, with_image["input_ids"].shape[1] :]
            log_probs, logits = _response_scores(model, with_image, response)
            removed, _ = _response_scores(model, without, response)
            entropy.append(truncated_entropy(logits, ToRConfig().entropy_top_p))
            sensitivity.append((log_probs - removed).abs())
            tokens.append(response)

    width = max(len(t) for t in tokens)
    mask = _right_padded([torch.ones(len(t)) for t in tokens], width).bool()
    entropy_b, sensitivity_b = _right_padded(entropy, width), _right_padded(sensitivity, width)
    weights, batch_metrics = tor_token_weights(entropy_b, sensitivity_b, mask, ToRConfig())
    # With ToR's defaults a weight names the set: 1 reasoning (or both), 0.5 perception only, 0 neither.
    lines = [
        f"{prompts} prompts x {responses} responses, {int(mask.sum())} valid tokens; batch metrics: "
        + ", ".join(f"{key} {value:.3f}" for key, value in batch_metrics.items()),
        "",
        "| position | most frequent tokens | mean top-p entropy | mean abs dlogp | weight 1 (reasoning) "
        "| weight 0.5 (perception only) | weight 0 | mean weight |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for position in range(width):
        valid = mask[:, position]
        if not valid.any():
            continue
        ids = [int(t[position]) for t in tokens if len(t) > position]
        common = ", ".join(
            f"{tokenizer.decode([i])!r} {ids.count(i)}" for i in sorted(set(ids), key=ids.count, reverse=True)[:3]
        )
        w = weights[:, position][valid]
        lines.append(
            f"| {position} | {common} | {entropy_b[:, position][valid].mean():.3f} "
            f"| {sensitivity_b[:, position][valid].mean():.3f} | {(w == 1.0).float().mean():.2f} "
            f"| {(w == 0.5).float().mean():.2f} | {(w == 0).float().mean():.2f} | {w.mean():.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (e.g. a demo run's warm_start/model)")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--responses", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(position_report(args.model, args.prompts, args.responses, args.seed))


if __name__ == "__main__":
    main()
