"""flash-attn's ``flash_attn_varlen_func`` in plain torch, to run veRL's remove-padding path on a CPU.

With ``actor_rollout_ref.model.use_remove_padding=true`` (every GPU recipe), veRL packs a micro-batch into one
row. Its Qwen2-VL/2.5-VL attention (``verl.models.transformers.qwen2_vl``) calls flash-attn's variable-length
kernel itself, with the sequence boundaries read off the position ids; Qwen3-VL and Qwen3.5 keep transformers'
attention, whose ``flash_attention_2`` implementation reads the boundaries off the text position ids (or takes the
vision tower's ``cu_seqlens``) and calls the same kernel. flash-attn needs CUDA; everything else on that path
(packing, M-RoPE position ids, the logits and log-prob gathering, ToR's truncated entropy and image-removed pass)
runs on a CPU. :func:`varlen_attention_in_verl` and :func:`varlen_attention_in_transformers` swap only the kernel,
the way the tests swap only the rollout backend and the device, so that path is tested here without being imitated.
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

    Like flash-attn, it accumulates in float32, returns the input dtype and takes fewer KV heads than query heads
    (grouped-query attention: query head h reads KV head ``h // (heads / kv_heads)``). Dropout and sliding windows
    are not needed by the inference paths it stands in for and are refused.

    Args:
        q: ``[total_tokens, heads, head_dim]`` packed sequences.
        k, v: ``[total_tokens, kv_heads, head_dim]``, ``heads`` a multiple of ``kv_heads``.
        cu_seqlens_q, cu_seqlens_k: ``[n + 1]`` sequence offsets into the packed tokens.
        max_seqlen_q, max_seqlen_k: longest sequence (flash-attn's launch size; unused here).
        softmax_scale: defaults to ``head_dim ** -0.5``.
        causal: causal mask within each sequence.

    Returns:
        ``[total_tokens, heads, head_dim]`` in ``q.dtype``.
    """
    if dropout_p != 0.0:
        raise ValueError("varlen_attention supports dropout_p=0 only (inference)")
    if q.shape[1] % k.shape[1] != 0:
        raise ValueError(
            f"varlen_attention needs query heads a multiple of KV heads, got {q.shape[1]} and {k.shape[1]}"
        )
    if k.shape[1] != q.shape[1]:
        k, v = (t.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for t in (k, v))
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


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """``flash_attn.flash_attn_func`` (one sequence per row, no padding) by :func:`varlen_attention`.

    Args:
        q: ``[batch, L, heads, head_dim]``; k, v: ``[batch, L, kv_heads, head_dim]``.

    Returns:
        ``[batch, L, heads, head_dim]`` in ``q.dtype``.
    """
    batch, length = q.shape[:2]
    offsets = torch.arange(0, (batch + 1) * length, length, device=q.device, dtype=torch.int32)
    flat = (t.reshape(batch * length, *t.shape[2:]) for t in (q, k, v))
    out = varlen_attention(*flat, offsets, offsets, length, length, dropout_p, softmax_scale, causal)
    return out.reshape(q.shape)


def _flash_attention_forward(query, key, value, attention_mask, query_length, is_causal=True, **kwargs):
    """transformers' wrapper, for what veRL sends it: ``[batch, L, heads, D]`` rows without a padding mask."""
    if attention_mask is not None or kwargs.get("dropout", 0.0) != 0.0:
        raise ValueError("varlen_attention_in_verl covers the remove-padding inference path (no mask, no dropout)")
    return flash_attention(query, key, value, softmax_scale=kwargs.get("softmax_scale"), causal=is_causal)


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


# transformers' module that loads flash-attn lazily, and the globals it keeps the loaded kernels in.
TRANSFORMERS_FLASH_MODULE = "transformers.modeling_flash_attention_utils"
TRANSFORMERS_FLASH_GLOBALS = (
    "_loaded_implementation",
    "_flash_fn",
    "_flash_varlen_fn",
    "_flash_with_kvcache_fn",
    "_pad_fn",
    "_unpad_fn",
    "_process_flash_kwargs_fn",
)
FLASH_ATTENTION_2 = "flash_attention_2"


@contextmanager
def varlen_attention_in_transformers() -> Iterator[None]:
    """Inside, transformers' ``flash_attention_2`` runs on :func:`varlen_attention` / :func:`flash_attention`.

    transformers loads flash-attn's functions into module globals once (``lazy_import_flash_attention``) and from
    then on calls them from its own ``_flash_attention_forward`` (padding removal, packed-sequence detection from
    position ids, ``cu_seqlens``); we load ours there instead, with transformers' own torch pad/unpad helpers, and
    let a model request ``attn_implementation="flash_attention_2"`` without flash-attn installed.
    """
    import importlib

    from transformers import modeling_utils

    flash_utils = importlib.import_module(TRANSFORMERS_FLASH_MODULE)
    saved = {name: getattr(flash_utils, name) for name in TRANSFORMERS_FLASH_GLOBALS}
    original_check = modeling_utils.PreTrainedModel._check_and_adjust_attn_implementation

    def check_and_adjust(self, attn_implementation, *args, **kwargs):
        if attn_implementation == FLASH_ATTENTION_2:
            return FLASH_ATTENTION_2
        return original_check(self, attn_implementation, *args, **kwargs)

    flash_utils._loaded_implementation = FLASH_ATTENTION_2
    flash_utils._flash_fn = flash_attention
    flash_utils._flash_varlen_fn = varlen_attention
    flash_utils._flash_with_kvcache_fn = None
    flash_utils._pad_fn, flash_utils._unpad_fn = flash_utils._pad_input, flash_utils._unpad_input
    flash_utils._process_flash_kwargs_fn = flash_utils._lazy_define_process_function(varlen_attention)
    modeling_utils.PreTrainedModel._check_and_adjust_attn_implementation = check_and_adjust
    try:
        yield
    finally:
        modeling_utils.PreTrainedModel._check_and_adjust_attn_implementation = original_check
        for name, value in saved.items():
            setattr(flash_utils, name, value)
