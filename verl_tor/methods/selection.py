"""Top-fraction token selection shared by the methods, in pure torch.

The rule (ToR's Eq. 6-7, also the 80/20 paper's and VPPO's selections): of the N valid tokens of a scope, the
⌈α·N⌉ with the highest score, where ⌈α·N⌉ reads α as the decimal it prints as; a score ≤ 0 or not finite is never
selected (so fewer are selected when fewer are eligible: a token that does not depend on the image is not a
perception token); ties at the boundary go to the lowest flat index (earlier sample, then earlier token).

Scopes: ``batch`` selects over all valid tokens of the rollout batch (ToR, 80/20); ``response`` selects in each
response separately, N being that response's valid tokens (VPPO's top 40 % per response).
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

SCOPES = ("batch", "response")
"""Names accepted by ``select_top_fraction``'s ``scope``."""


def top_count(fraction: float, n: int) -> int:
    """⌈fraction·n⌉, exactly: `fraction` is read as the decimal it prints as, so ⌈0.07·100⌉ = 7, not 8.

    In floats 0.07·100 = 7.000000000000001; `Fraction(repr(0.07))` is exactly 7/100.
    """
    return math.ceil(Fraction(repr(float(fraction))) * n)


def select_top_fraction(
    scores: torch.Tensor, mask: torch.Tensor, fraction: float, scope: str = "batch"
) -> torch.Tensor:
    """Selects the ⌈fraction·N⌉ highest-scoring valid positions of each scope (module docstring for the rule).

    Args:
        scores: `[B, T]` float scores (any shape for scope ``batch``).
        mask: same shape, bool or 0/1: which positions are valid.
        fraction: the fraction α of valid positions to select, in [0, 1].
        scope: ``"batch"`` (one selection over every position) or ``"response"`` (one per row).

    Returns:
        bool tensor of the scores' shape, true at the selected positions.
    """
    if scores.shape != mask.shape:
        raise ValueError(f"scores and mask must have the same shape, got {tuple(scores.shape)} and {tuple(mask.shape)}")
    selected, _, _ = select_with_threshold(scores, as_bool(mask), fraction, scope)
    return selected


def select_with_threshold(
    scores: torch.Tensor, valid: torch.Tensor, fraction: float, scope: str
) -> tuple[torch.Tensor, int, float]:
    """``select_top_fraction`` given a bool mask; also returns how many positions are selected and the smallest
    selected score (0.0 when none is)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if scope == "batch":
        return _select_in_batch(scores, valid, fraction)
    if scope == "response":
        return _select_per_response(scores, valid, fraction)
    raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")


def as_bool(mask: torch.Tensor) -> torch.Tensor:
    """A bool or 0/1 mask as bool."""
    mask = mask.detach()
    return mask if mask.dtype == torch.bool else mask != 0


def _eligible(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return valid & (scores > 0) & (scores < math.inf)  # NaN fails both comparisons


def _select_in_batch(scores: torch.Tensor, valid: torch.Tensor, fraction: float) -> tuple[torch.Tensor, int, float]:
    # Contiguous, so that flat (row-major) indices and `view(-1)` agree below.
    scores = scores.detach().contiguous()
    eligible = _eligible(scores, valid.contiguous())
    eligible_scores = scores.view(-1)[eligible.view(-1)]  # flat: a 1-D mask indexes faster than a 2-D one
    count = min(top_count(fraction, int(torch.count_nonzero(valid))), eligible_scores.numel())
    if count == 0:
        return torch.zeros_like(eligible), 0, 0.0
    # kthvalue is a linear-time selection, no sort of the batch: kth = the count-th largest eligible score.
    kth = torch.kthvalue(eligible_scores, eligible_scores.numel() - count + 1).values
    ties_needed = count - int(torch.count_nonzero(eligible_scores > kth))
    if ties_needed == int(torch.count_nonzero(eligible_scores == kth)):
        return eligible & (scores >= kth), count, float(kth)
    selected = eligible & (scores > kth)
    # nonzero() lists positions in row-major order, so the first ties are the lowest flat indices.
    tie_positions = (eligible & (scores == kth)).view(-1).nonzero().squeeze(1)
    selected.view(-1)[tie_positions[:ties_needed]] = True
    return selected, count, float(kth)


def _select_per_response(scores: torch.Tensor, valid: torch.Tensor, fraction: float) -> tuple[torch.Tensor, int, float]:
    if scores.dim() != 2:
        raise ValueError(f"scope 'response' needs [B, T] scores, got shape {tuple(scores.shape)}")
    scores = scores.detach()
    eligible = _eligible(scores, valid)
    budget = torch.tensor([top_count(fraction, int(n)) for n in valid.sum(dim=1).tolist()], dtype=torch.long)
    count = torch.minimum(budget, eligible.sum(dim=1).cpu()).to(scores.device)
    # A stable descending sort ranks equal scores by position: the earlier token first.
    ranked = scores.masked_fill(~eligible, -math.inf)
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    selected = eligible & (rank < count[:, None])
    n_selected = int(count.sum())
    threshold = float(scores[selected].min()) if n_selected else 0.0
    return selected, n_selected, threshold
