"""Per-sample tensors <-> the jagged nested tensors veRL and TransferQueue carry batches in."""

from __future__ import annotations

import torch


def nested_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """A jagged nested tensor of per-sample tensors ragged in their LAST dimension.

    ``torch.nested.as_nested_tensor`` picks the first dimension that differs, so per-sample ``(4, L)`` position
    ids of equal length would be ragged in the wrong dimension; veRL's engine expects ``(bsz, 4, j)``.

    Args:
        rows: tensors of shape ``[..., L_i]`` with equal leading dimensions.

    Returns:
        nested tensor of shape ``[len(rows), ..., j]``.
    """
    lengths = torch.tensor([row.shape[-1] for row in rows])
    offsets = torch.zeros(len(rows) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(lengths, 0)
    values = torch.cat(rows, dim=-1)
    # Without the length bounds, padding a nested tensor pads every row to the total length.
    return torch.nested.nested_tensor_from_jagged(
        values,
        offsets,
        jagged_dim=values.dim(),
        min_seqlen=int(lengths.min()) if len(rows) else 0,
        max_seqlen=int(lengths.max()) if len(rows) else 0,
    )


def as_list(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Per-sample tensors of a nested or a dense (equal-length) batch."""
    return list(tensor.unbind()) if tensor.is_nested else list(tensor)
