"""Independent float64 references shared by several test modules (on the test path via pytest's ``pythonpath``)."""

import numpy as np
import torch


def reference_truncated_entropy(logits: torch.Tensor, top_p: float) -> np.ndarray:
    """Full descending sort; a token is kept iff the mass ranked strictly before it is < top_p; renormalize."""
    rows = logits.double().reshape(-1, logits.shape[-1]).numpy()
    entropies = []
    for row in rows:
        probs = np.exp(row - row.max())
        probs = np.sort(probs / probs.sum())[::-1]
        mass_before = np.concatenate([[0.0], np.cumsum(probs)[:-1]])
        kept = probs[mass_before < top_p]
        kept = kept[kept > 0] / kept.sum()
        entropies.append(-(kept * np.log(kept)).sum())
    return np.array(entropies).reshape(tuple(logits.shape[:-1]))


def reference_truncated_entropy_bounds(
    logits: torch.Tensor, top_p: float, mass_slack: float
) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest truncated entropy over the top-p sets a ``mass_slack`` error of the probabilities allows.

    A token's membership of the top-p set flips when the mass ranked before it is within the error of ``top_p``:
    low-precision logits can then select a different set, with a very different entropy. This returns, per row, the
    range of the entropies of every set whose threshold lies in ``[top_p - mass_slack, top_p + mass_slack]``.
    """
    rows = logits.double().reshape(-1, logits.shape[-1]).numpy()
    low, high = [], []
    for row in rows:
        probs = np.exp(row - row.max())
        probs = np.sort(probs / probs.sum())[::-1]
        mass_before = np.concatenate([[0.0], np.cumsum(probs)[:-1]])
        smallest = max(1, int((mass_before < top_p - mass_slack).sum()))
        largest = max(1, int((mass_before < top_p + mass_slack).sum()))
        entropies = []
        for size in range(smallest, largest + 1):
            kept = probs[:size]
            kept = kept[kept > 0] / kept.sum()
            entropies.append(-(kept * np.log(kept)).sum())
        low.append(min(entropies))
        high.append(max(entropies))
    shape = tuple(logits.shape[:-1])
    return np.array(low).reshape(shape), np.array(high).reshape(shape)
