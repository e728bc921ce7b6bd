"""Recording ToR's token choice during training (``tor.inspect.*``), into ``tor_inspect.jsonl``.

The ToR trainer calls :meth:`InspectRecorder.record_step` right after it weighted a rollout batch, with data the
step already has (scores, sets, weights, advantages, the batch's ids and the processor's pixel patches): no extra
forward pass. A few samples per recorded step are kept in full (every response token with its scores), chosen
to be informative (correct and incorrect responses, with and without images, round-robin) and deterministically:
from the seed, the step and the samples' content, whatever order the asynchronous rollout returned them in.
The file format is described in :mod:`verl_tor.inspect`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from verl_tor.inspect import INSPECT_FILE

FORMAT_VERSION = 2
HISTOGRAM_BINS = 40
TOP_TOKENS = 20
SIGNIFICANT_DIGITS = 6
"""Scores and advantages are written with 6 significant digits (a float32 has ~7): the file stays small."""


@dataclass
class InspectConfig:
    """The ``tor.inspect`` section: which steps and how many samples the token inspector records.

    Parameters:
        samples_per_step (`int`, defaults to 0): samples recorded in full per recorded step; 0 turns recording off.
        every_n_steps (`int`, defaults to 1): record steps 1, 1 + n, 1 + 2n, ...
        thumbnail_px (`int`, defaults to 96): longest side of the image thumbnails stored with each sample.
        dir (`str` or None, defaults to None): folder of ``tor_inspect.jsonl``; None is trainer.default_local_dir.
    """

    samples_per_step: int = 0
    every_n_steps: int = 1
    thumbnail_px: int = 96
    dir: str | None = None

    def __post_init__(self) -> None:
        for name, low in (("samples_per_step", 0), ("every_n_steps", 1), ("thumbnail_px", 8)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"tor.inspect.{name} must be an integer >= {low}, got {value!r}")
        if self.dir is not None and not isinstance(self.dir, str):
            raise ValueError(f"tor.inspect.dir must be a path or null, got {self.dir!r}")

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any] | None) -> InspectConfig:
        """From the Hydra ``tor.inspect`` section (missing keys keep their defaults; unknown keys are an error)."""
        section = dict(section or {})
        fields = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(section) - fields)
        if unknown:
            names = ", ".join(f"tor.inspect.{key}" for key in unknown)
            raise ValueError(f"unknown ToR option(s) {names}; valid options: {', '.join(sorted(fields))}")
        return cls(**section)

    @property
    def enabled(self) -> bool:
        return self.samples_per_step > 0

    def records(self, step: int) -> bool:
        """Whether training step ``step`` (1-based) is recorded."""
        return self.enabled and (step - 1) % self.every_n_steps == 0


def choose_samples(
    candidates: Sequence[int], content_keys: Sequence[bytes], strata: Sequence[Any], count: int, seed: int
) -> list[int]:
    """``count`` of ``candidates``, taking the strata (e.g. correct × has-image) in turn, deterministically.

    Args:
        candidates: row indices to choose from.
        content_keys: per candidate, bytes that identify it whatever the batch order (e.g. its token ids).
        strata: per candidate, its stratum; strata are visited in their sorted order, one sample each per round.
        count: how many to choose (all when there are fewer).
        seed: with the content keys, decides the order inside each stratum.

    Returns:
        the chosen row indices, in the order chosen.
    """
    ranked = sorted(
        range(len(candidates)),
        key=lambda i: hashlib.sha256(seed.to_bytes(8, "little", signed=True) + content_keys[i]).digest(),
    )
    queues: dict[Any, list[int]] = {}
    for i in ranked:
        queues.setdefault(strata[i], []).append(candidates[i])
    chosen: list[int] = []
    order = sorted(queues, key=repr)
    while len(chosen) < count and any(queues.values()):
        for stratum in order:
            if queues[stratum] and len(chosen) < count:
                chosen.append(queues[stratum].pop(0))
    return chosen


def token_sets(reasoning: torch.Tensor, perception: torch.Tensor) -> list[str]:
    """Per token, ``both``, ``reasoning``, ``perception`` or ``none`` from the two selection masks ``[R]``."""
    names = np.array(["none", "perception", "reasoning", "both"])
    return names[(reasoning.long() * 2 + perception.long()).numpy()].tolist()


def histogram(scores: torch.Tensor) -> dict[str, list]:
    """Counts of finite ``scores`` ``[N]`` in ``HISTOGRAM_BINS`` equal bins from 0 to their maximum."""
    finite = scores[torch.isfinite(scores)].double()
    top = float(finite.max()) if finite.numel() else 0.0
    edges = np.linspace(0.0, top if top > 0 else 1.0, HISTOGRAM_BINS + 1)
    counts, _ = np.histogram(finite.clamp(min=0).numpy(), bins=edges)
    return {"edges": [_rounded(e) for e in edges], "counts": counts.tolist()}


def images_from_patches(pixel_values: torch.Tensor, grid_thw: torch.Tensor, image_processor) -> list[np.ndarray]:
    """The pictures a Qwen-VL image processor's ``pixel_values`` hold, as ``[H, W, 3]`` uint8 arrays.

    Undoes the processor's patch layout (temporal patch, channel, merged patch rows and columns) and its
    normalisation, so a thumbnail shows what the model saw (after resizing), from the batch veRL keeps.

    Args:
        pixel_values: ``[Σ t·h·w, C·T·P·P]`` patches of all images of a sample.
        grid_thw: ``[n_images, 3]`` patch grid (t, h, w) of each image.
        image_processor: the processor's image processor (``patch_size``, ``temporal_patch_size``,
            ``merge_size``, ``image_mean``, ``image_std``, ``rescale_factor``).
    """
    patch = int(image_processor.patch_size)
    temporal = int(image_processor.temporal_patch_size)
    merge = int(image_processor.merge_size)
    mean = torch.tensor(image_processor.image_mean, dtype=torch.float32)
    std = torch.tensor(image_processor.image_std, dtype=torch.float32)
    scale = float(getattr(image_processor, "rescale_factor", 1 / 255))
    images, start = [], 0
    for t, h, w in grid_thw.tolist():
        count = t * h * w
        patches = pixel_values[start : start + count].float()
        start += count
        channels = patches.shape[-1] // (temporal * patch * patch)
        grid = patches.reshape(t, h // merge, w // merge, merge, merge, channels, temporal, patch, patch)
        # → (t, temporal, channels, h//merge, merge, patch, w//merge, merge, patch): rows then columns of pixels.
        frames = grid.permute(0, 6, 5, 1, 3, 7, 2, 4, 8).reshape(t * temporal, channels, h * patch, w * patch)
        picture = frames[0] * std[:, None, None] + mean[:, None, None]  # every temporal copy is the same picture
        images.append((picture / scale).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())
    return images


def thumbnail_data_url(image: np.ndarray, longest_side: int) -> str:
    """A PNG data URL of ``image`` ``[H, W, 3]`` scaled down to ``longest_side`` pixels at most."""
    from PIL import Image

    picture = Image.fromarray(image)
    picture.thumbnail((longest_side, longest_side))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class StepBatch:
    """What a ToR step knows about its rollout batch, per sample (``[R_i]`` tensors per response).

    ``rows`` are the real (non-padding) samples the selection ran over; every list is indexed by batch row.
    ``advantages`` are veRL's, ``weights`` the method's w, ``loss_advantages`` the advantages the policy loss reads
    (A·w where the weights go through the advantage, A where they go through ``rollout_is_weights``) and ``rho``
    veRL's own rollout-correction weights ρ (None when rollout correction is off).
    """

    rows: list[int]
    prompts: list[torch.Tensor]
    responses: list[torch.Tensor]
    response_mask: list[torch.Tensor]
    entropy: list[torch.Tensor]
    sensitivity: list[torch.Tensor]
    reasoning: list[torch.Tensor]
    perception: list[torch.Tensor]
    weights: list[torch.Tensor]
    advantages: list[torch.Tensor]
    loss_advantages: list[torch.Tensor]
    rho: list[torch.Tensor] | None
    metrics: dict[str, float]


class InspectRecorder:
    """Appends the run header and the recorded steps to ``<dir>/tor_inspect.jsonl``."""

    def __init__(self, cfg: InspectConfig, directory: str, tokenizer, processor=None, seed: int = 0):
        self.cfg = cfg
        self.path = os.path.join(directory, INSPECT_FILE)
        self.tokenizer = tokenizer
        self.processor = processor
        self.seed = seed

    def write_run_header(
        self,
        experiment: str,
        tor: Mapping[str, Any],
        weight_target: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """The ``run`` record a (re)started trainer writes first: the resolved method (``tor``), where its weights
        enter the loss (``weight_target``: ``advantages`` or ``loss``) and the method's scores and sets in words."""
        self._append(
            {
                "kind": "run",
                "version": FORMAT_VERSION,
                "experiment": experiment,
                "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "tor": dict(tor),
                "weight_target": weight_target,
                "labels": dict(labels or {}),
                "inspect": {
                    "samples_per_step": self.cfg.samples_per_step,
                    "every_n_steps": self.cfg.every_n_steps,
                    "thumbnail_px": self.cfg.thumbnail_px,
                },
            }
        )

    def choose(self, batch: StepBatch, correct: Sequence[bool | None], has_image: Sequence[bool], step: int) -> list:
        """The rows to record in full (see :func:`choose_samples`)."""
        keys = [
            batch.prompts[row].numpy().tobytes() + b"|" + batch.responses[row].numpy().tobytes() for row in batch.rows
        ]
        strata = [(bool(correct[row]), has_image[row]) for row in batch.rows]
        return choose_samples(batch.rows, keys, strata, self.cfg.samples_per_step, self.seed * 1_000_003 + step)

    def record_step(self, step: int, batch: StepBatch, samples: Sequence[Mapping[str, Any]]) -> None:
        """Append one ``step`` record: batch-wide thresholds, fractions, histograms and top tokens, and ``samples``
        (from :meth:`sample_record`)."""
        valid = [batch.response_mask[row].bool() for row in batch.rows]
        entropy = torch.cat([batch.entropy[row][mask] for row, mask in zip(batch.rows, valid, strict=True)])
        sensitivity = torch.cat([batch.sensitivity[row][mask] for row, mask in zip(batch.rows, valid, strict=True)])
        metrics = batch.metrics
        self._append(
            {
                "kind": "step",
                "step": step,
                "n_valid_tokens": int(entropy.numel()),
                "n_samples": len(batch.rows),
                "thresholds": {
                    "reasoning": metrics["reasoning_threshold"],
                    "perception": metrics["perception_threshold"],
                },
                "fractions": {name: metrics[f"{name}_fraction"] for name in ("reasoning", "perception", "overlap")},
                "histograms": {"entropy": histogram(entropy), "sensitivity": histogram(sensitivity)},
                "top_tokens": {
                    name: self._top_tokens(batch, mask)
                    for name, mask in (("reasoning", batch.reasoning), ("perception", batch.perception))
                },
                "samples": list(samples),
            }
        )

    def sample_record(
        self,
        batch: StepBatch,
        row: int,
        *,
        uid: str,
        data_source: str,
        extra_info: Mapping[str, Any] | None,
        reward: float,
        acc: float | None,
        multi_modal_inputs: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """One sample in full: prompt, thumbnails, and every response token with its scores and set."""
        pixel_values = (multi_modal_inputs or {}).get("pixel_values")
        images = []
        if pixel_values is not None and self.processor is not None:
            pictures = images_from_patches(
                pixel_values, multi_modal_inputs["image_grid_thw"], self.processor.image_processor
            )
            images = [thumbnail_data_url(picture, self.cfg.thumbnail_px) for picture in pictures]
        response = batch.responses[row]
        weights = batch.weights[row]
        advantages = batch.advantages[row].float()
        rho = {} if batch.rho is None else {"rho": [_rounded(x) for x in batch.rho[row].float().tolist()]}
        return {
            "index": row,
            "uid": uid,
            "data_source": data_source,
            "extra_info": _json_compatible(extra_info or {}),
            "prompt": self._prompt_text(batch.prompts[row]),
            "reward": _rounded(reward),
            "acc": None if acc is None else _rounded(acc),
            "has_image": pixel_values is not None,
            "images": images,
            "tokens": {
                "id": response.tolist(),
                "text": [self.tokenizer.decode([token]) for token in response.tolist()],
                "H": [_rounded(x) for x in batch.entropy[row].tolist()],
                "S": [_rounded(x) for x in batch.sensitivity[row].tolist()],
                "set": token_sets(batch.reasoning[row], batch.perception[row]),
                "w": weights.tolist(),
                "adv": [_rounded(x) for x in advantages.tolist()],
                "adv_loss": [_rounded(x) for x in batch.loss_advantages[row].float().tolist()],
                **rho,
                "valid": batch.response_mask[row].bool().tolist(),
            },
        }

    def _prompt_text(self, prompt_ids: torch.Tensor) -> str:
        """The decoded prompt with each run of a vision placeholder shown once, with its length."""
        text = self.tokenizer.decode(prompt_ids.tolist(), skip_special_tokens=False)
        for placeholder in ("<|image_pad|>", "<|video_pad|>"):
            run = re.compile(f"(?:{re.escape(placeholder)})+")
            text = run.sub(lambda m, p=placeholder: f"{p}×{len(m.group(0)) // len(p)}", text)
        return text

    def _top_tokens(self, batch: StepBatch, selected: list[torch.Tensor]) -> list[list]:
        counts = Counter()
        for row in batch.rows:
            counts.update(batch.responses[row][selected[row]].tolist())
        return [[self.tokenizer.decode([token]), count] for token, count in counts.most_common(TOP_TOKENS)]

    def _append(self, record: dict[str, Any]) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        # One write per record and a flush: a reader sees whole lines (or a last line being written).
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, allow_nan=True) + "\n")
            f.flush()


def _json_compatible(value: Any) -> Any:
    """``value`` with what JSON cannot hold (arrays, tensors, objects) as lists or strings."""
    return json.loads(json.dumps(value, default=lambda obj: obj.tolist() if hasattr(obj, "tolist") else str(obj)))


def _rounded(value: float) -> float:
    """``value`` to ``SIGNIFICANT_DIGITS`` significant digits (non-finite values unchanged)."""
    value = float(value)
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else value
