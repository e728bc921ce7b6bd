"""The counterfactuals that keep the image's tokens and change its pixels: ``black_patches`` (VPPO),
``mask_patches`` (PAPO-style) and ``gaussian_noise`` (VEPO). The vision tower runs again on the changed pixels.

They work on the ``pixel_values`` veRL's agent loop stores per sample (``multi_modal_inputs``), which the Qwen-VL
image processors have already resized, rescaled (1/255), normalised ((x − mean_c) / std_c) and cut into patches:
one row per ``patch × patch`` square of the resized image, in the vision tower's order (merge windows of
``merge × merge`` patches, row-major), each row laid out ``(channel, temporal, y, x)``; an image is one frame
repeated ``temporal_patch_size`` (2) times. One row is therefore one pixel patch of the resized image: 14 × 14
pixels for Qwen2.5-VL, 16 × 16 for Qwen3-VL and Qwen3.5. The patch counterfactuals draw one Bernoulli per row.

- ``black_patches``: each patch black with p = 0.5 (VPPO, arXiv 2510.09285, 14-px patches of Qwen2.5-VL). Black is
  pixel value 0 in every channel, i.e. (0 − mean_c) / std_c after normalisation. For the patch-16 families the
  patch is the vision tower's own 16 × 16 patch (the same p, so the same share of pixels): a 14-px grid would cut
  across the tower's patches, and VPPO's 14 px is Qwen2.5-VL's patch size.
- ``mask_patches``: each patch masked with p = 0.6 (PAPO, arXiv 2507.06448). A masked patch is set to 0 in
  normalised units, i.e. to the processor's mean colour (image_mean): the value that carries no signal into the
  patch embedding (its convolution sees zeros) and that the normalisation centres every input on, so a masked patch
  reads as "no information" rather than as a black object (which is ``black_patches``'s question). PAPO's text as
  read here says "random patch masking, ratio 0.6" without the fill value; this choice is ours.
- ``gaussian_noise``: z ~ N(0, σ²) added to every normalised pixel value, σ = :data:`GAUSSIAN_NOISE_STD`, the same
  noise for the frame's temporal copies (noise on the image, as if the noisy image had been processed). σ = 1 is
  one standard deviation of the processor's per-channel normalisation, i.e. noise as strong as the spread of natural
  pixel values: the paper's own σ (VEPO, arXiv 2606.03937) could not be read here and should be checked.

Each draw is deterministic per sample and step: a generator seeded from the run seed, the training step, the
counterfactual's name and the sample's content (its prompt ids and pixel values), so the responses of one prompt
share one counterfactual image, and a rerun with the same seed draws the same one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

BLACK_PATCH_PROBABILITY = 0.5
"""VPPO's probability of blackening each patch."""
MASK_PATCH_PROBABILITY = 0.6
"""PAPO's masking ratio, as the probability of masking each patch."""
GAUSSIAN_NOISE_STD = 1.0
"""σ of the noise on normalised pixels, in units of the processor's per-channel standard deviation."""

PIXEL_COUNTERFACTUALS = ("black_patches", "mask_patches", "gaussian_noise")


@dataclass(frozen=True)
class PatchGeometry:
    """How one model's image processor lays out ``pixel_values``."""

    patch_size: int
    temporal_patch_size: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]

    @classmethod
    def of(cls, image_processor) -> PatchGeometry:
        """Read from a Qwen2-VL-style image processor (Qwen2.5-VL, Qwen3-VL, Qwen3.5)."""
        return cls(
            patch_size=int(image_processor.patch_size),
            temporal_patch_size=int(image_processor.temporal_patch_size),
            image_mean=_per_channel(image_processor.image_mean),
            image_std=_per_channel(image_processor.image_std),
        )

    @property
    def row_width(self) -> int:
        return len(self.image_mean) * self.temporal_patch_size * self.patch_size**2

    def black(self) -> torch.Tensor:
        """``[C]`` the normalised value of pixel 0 per channel."""
        return -torch.tensor(self.image_mean, dtype=torch.float64) / torch.tensor(self.image_std, dtype=torch.float64)

    def patches(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[N, C·T·p·p]`` → ``[N, C, T, p, p]`` (a view)."""
        if pixel_values.dim() != 2 or pixel_values.shape[1] != self.row_width:
            raise ValueError(
                f"pixel_values of shape {tuple(pixel_values.shape)} are not rows of {self.row_width} values "
                f"({len(self.image_mean)} channels x {self.temporal_patch_size} frames x {self.patch_size}^2 pixels)"
            )
        p = self.patch_size
        return pixel_values.view(-1, len(self.image_mean), self.temporal_patch_size, p, p)


def _per_channel(value) -> tuple[float, ...]:
    """An image processor's mean or std (a number or one per RGB channel) as one float per channel."""
    return tuple(float(v) for v in value) if hasattr(value, "__len__") else (float(value),) * 3


def sample_generator(kind: str, seed: int, step: int, prompt: torch.Tensor, pixel_values: torch.Tensor):
    """A generator seeded from the run seed, the step, the counterfactual and the sample's content."""
    digest = hashlib.sha256(f"{kind}|{seed}|{step}|".encode())
    digest.update(prompt.to(torch.int64).contiguous().numpy().tobytes())
    digest.update(pixel_values.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return torch.Generator().manual_seed(int.from_bytes(digest.digest()[:8], "little") & (2**63 - 1))


def patch_draw(pixel_values: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """``[N]`` bool: each patch (row) chosen independently with ``probability``."""
    return torch.rand(pixel_values.shape[0], generator=generator, dtype=torch.float64) < probability


def filled_patches(
    pixel_values: torch.Tensor, chosen: torch.Tensor, fill: torch.Tensor, geometry: PatchGeometry
) -> torch.Tensor:
    """A copy of ``pixel_values`` with the ``chosen`` rows set to ``fill`` (``[C]``, per channel, every frame)."""
    out = pixel_values.clone()
    geometry.patches(out)[chosen] = fill.to(out.dtype).view(1, -1, 1, 1, 1)
    return out


def noisy_pixels(
    pixel_values: torch.Tensor, std: float, geometry: PatchGeometry, generator: torch.Generator
) -> torch.Tensor:
    """``pixel_values`` + N(0, std²) per pixel of the image (one draw for all temporal copies of a frame)."""
    rows = geometry.patches(pixel_values)
    n, channels, _, p, _ = rows.shape
    noise = torch.randn((n, channels, 1, p, p), generator=generator, dtype=torch.float32) * std
    return (rows.float() + noise).to(pixel_values.dtype).reshape(pixel_values.shape)


def counterfactual_pixels(
    kind: str, pixel_values: torch.Tensor, geometry: PatchGeometry, generator: torch.Generator
) -> torch.Tensor:
    """The ``pixel_values`` of one sample under the pixel counterfactual ``kind`` (see the module docstring).

    Args:
        pixel_values: ``[N, C·T·p·p]`` the sample's image patches (all its images).

    Returns:
        ``[N, C·T·p·p]`` new tensor.
    """
    if kind == "black_patches":
        chosen = patch_draw(pixel_values, BLACK_PATCH_PROBABILITY, generator)
        return filled_patches(pixel_values, chosen, geometry.black(), geometry)
    if kind == "mask_patches":
        chosen = patch_draw(pixel_values, MASK_PATCH_PROBABILITY, generator)
        return filled_patches(pixel_values, chosen, torch.zeros(len(geometry.image_mean)), geometry)
    if kind == "gaussian_noise":
        return noisy_pixels(pixel_values, GAUSSIAN_NOISE_STD, geometry, generator)
    raise ValueError(f"{kind!r} is not a pixel counterfactual; those are {PIXEL_COUNTERFACTUALS}")
