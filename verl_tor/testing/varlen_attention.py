"""flash-attn's ``flash_attn_varlen_func`` in plain torch, to run veRL's remove-padding path on a CPU.

With ``actor_rollout_ref.model.use_remove_padding=true`` (every GPU recipe), veRL packs a micro-batch into one
row and its Qwen2-VL/2.5-VL attention (``verl.models.transformers.qwen2_vl``) calls flash-attn's variable-length
kernel with the sequence boundaries read off the position ids. flash-attn needs CUDA; everything else on that path
(packing, M-RoPE position ids, the logits and log-prob gathering, ToR's truncated entropy and image-removed pass)
runs on a CPU. :func:`varlen_attention_in_verl` swaps only the kernel, the way the tests swap only the rollout
backend and the device, so that path is tested here without being imitated.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

TARGET_MODULE = "verl.models.transformers.qwen2_vl"
# What veRL's module reads from flash-attn at import time (undefined there when flash-attn is missing), and
# transformers' flash-attention wrapper it calls for a micro-batch of a single packed sequence.
FLASH_ATTN_NAMES = (
    "flash_attn_varlen_func",
    "_flash_attention_forward",
    "_flash_supports_window_size",
    "_flash_supports_deterministic",
    "_flash_use_top_left_mask",
)


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """Attention within each packed sequence, as ``flash_attn.flash_attn_varlen_func`` computes it.

    Like flash-attn, it accumulates in float32 and returns the input dtype. Dropout, sliding windows and GQA are
    not needed by veRL's Qwen2-VL inference path (it repeats the KV heads itself) and are refused.

    Args:
        q, k, v: ``[total_tokens, heads, head_dim]`` packed sequences.
        cu_seqlens_q, cu_seqlens_k: ``[n + 1]`` sequence offsets into the packed tokens.
        max_seqlen_q, max_seqlen_k: longest sequence (flash-attn's launch size; unused here).
        softmax_scale: defaults to ``head_dim ** -0.5``.
        causal: causal mask within each sequence.

    Returns:
        ``[total_tokens, heads, head_dim]`` in ``q.dtype``.
    """
    if dropout_p != 0.0:
        raise ValueError("varlen_attention supports dropout_p=0 only (inference)")
    if k.shape[1] != q.shape[1]:
        raise ValueError(f"varlen_attention needs as many KV heads as query heads, got {k.shape[1]} and {q.shape[1]}")
    if not torch.equal(cu_seqlens_q, cu_seqlens_k):
        raise ValueError("varlen_attention needs the same sequence boundaries for queries and keys")
    out = torch.empty_like(q)
    bounds = cu_seqlens_q.tolist()
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        # [L, H, D] -> [H, L, D] for sdpa.
        q_i, k_i, v_i = (t[start:end].transpose(0, 1).float() for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q_i, k_i, v_i, is_causal=causal, scale=softmax_scale)
        out[start:end] = attended.transpose(0, 1).to(q.dtype)
    return out


def _flash_attention_forward(query, key, value, attention_mask, query_length, is_causal=True, **kwargs):
    """transformers' wrapper, for what veRL sends it: ``[batch, L, heads, D]`` rows without a padding mask."""
    if attention_mask is not None or kwargs.get("dropout", 0.0) != 0.0:
        raise ValueError("varlen_attention_in_verl covers the remove-padding inference path (no mask, no dropout)")
    batch, length = query.shape[:2]
    offsets = torch.arange(0, (batch + 1) * length, length, device=query.device)
    flat = (t.reshape(batch * length, *t.shape[2:]) for t in (query, key, value))
    out = varlen_attention(
        *flat, offsets, offsets, length, length, softmax_scale=kwargs.get("softmax_scale"), causal=is_causal
    )
    return out.reshape(query.shape)


@contextmanager
def varlen_attention_in_verl() -> Iterator[None]:
    """Inside, veRL's Qwen2-VL remove-padding attention calls :func:`varlen_attention` instead of flash-attn."""
    import importlib

    module = importlib.import_module(TARGET_MODULE)
    missing = object()
    saved = {name: getattr(module, name, missing) for name in FLASH_ATTN_NAMES}
    module.flash_attn_varlen_func = varlen_attention  # same parameter names as flash-attn's, as veRL calls it
    module._flash_attention_forward = _flash_attention_forward
    module._flash_supports_window_size = False
    module._flash_supports_deterministic = False
    module._flash_use_top_left_mask = False  # flash-attn >= 2.1 aligns the causal mask bottom-right
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(module, name)
            else:
                setattr(module, name, value)
