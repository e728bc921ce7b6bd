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
