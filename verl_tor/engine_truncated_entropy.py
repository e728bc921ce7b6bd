"""Truncated (top-p) entropy from the logits of veRL's old-log-prob forward, in that same forward.

ToR's reasoning score (Eq. 5) is the entropy of the renormalized top-p set of each next-token distribution.
Only the forward that computes the old log-probs has the logits, so we attach to veRL's FSDP engine
(``FSDPEngineWithLMHead.prepare_model_outputs``): when a micro-batch carries the meta key
``TRUNCATED_ENTROPY_TOP_P``, the engine's output gains a field ``TRUNCATED_ENTROPY`` laid out like veRL's own
``entropy`` (a nested tensor over prompt + response of each sample), so that the trainer extracts the response
part with veRL's ``response_from_nested``. Without the meta key nothing changes. The temperature is the one veRL
applies to the same logits (the rollout temperature), so the score describes the distribution that was sampled.
"""

from __future__ import annotations

from types import ModuleType

import torch

from verl_tor.token_weights import truncated_entropy

TARGET_MODULE = "verl.workers.engine.fsdp.transformer_impl"
TRUNCATED_ENTROPY_TOP_P = "tor_entropy_top_p"
TRUNCATED_ENTROPY = "tor_truncated_entropy"
# Rows of the (tokens, vocab) logits scaled and scored at a time: bounds the fp32 copy to this many rows.
ROWS_PER_CHUNK = 1024


def truncated_entropy_of_rows(logits: torch.Tensor, temperature: torch.Tensor, top_p: float) -> torch.Tensor:
    """Top-p entropy of ``logits / temperature`` row by row.

    Args:
        logits: ``[N, V]`` raw logits (any float dtype).
        temperature: ``[N]`` per-row temperature.
        top_p: nucleus mass of Eq. 5.

    Returns:
        ``[N]`` float32 entropies.
    """
    out = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
    for start in range(0, logits.shape[0], ROWS_PER_CHUNK):
        rows = slice(start, start + ROWS_PER_CHUNK)
        scaled = logits[rows].float() / temperature[rows].float().clamp(min=1e-8).unsqueeze(-1)
        out[rows] = truncated_entropy(scaled, top_p)
    return out


def _truncated_entropy_nested(engine, output, output_args: dict, micro_batch, top_p: float) -> torch.Tensor:
    """The truncated entropy of every position, as a nested ``(bsz, prompt + response)`` tensor like veRL's."""
    from verl.utils import tensordict_utils as tu

    if getattr(output, "logits", None) is None:
        raise RuntimeError(
            "tor.entropy_top_p < 1 needs the logits of the old-log-prob forward; fused kernels do not return them. "
            "Set actor_rollout_ref.model.use_fused_kernels=False or tor.entropy_top_p=1.0."
        )
    cu_seqlens = micro_batch["input_ids"].offsets()
    use_remove_padding = tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True)
    if use_remove_padding:
        logits = output.logits.squeeze(0)  # (total_nnz / sp + pad, V)
        if hasattr(logits, "full_tensor"):  # tensor parallel: vocab-sharded DTensor
            logits = logits.full_tensor()
        entropy = truncated_entropy_of_rows(logits, output_args["temperature_rmpad"], top_p)
        entropy = engine._gather_and_unpad_packed(entropy, output_args["pad_size"])
    else:
        logits = output.logits  # (bsz, max_len, V), right-padded
        if hasattr(logits, "full_tensor"):
            logits = logits.full_tensor()
        lengths = cu_seqlens.diff().tolist()
        temperature = output_args["temperature"].to(logits.device)
        entropy = torch.cat(
            [
                truncated_entropy_of_rows(logits[i, :length], temperature[i].expand(length), top_p)
                for i, length in enumerate(lengths)
            ]
        )
    return torch.nested.nested_tensor_from_jagged(entropy, cu_seqlens)


def install(transformer_impl: ModuleType) -> None:
    """Wrap ``FSDPEngineWithLMHead.prepare_model_outputs`` to add the truncated entropy on request."""
    engine_cls = transformer_impl.FSDPEngineWithLMHead
    original = engine_cls.prepare_model_outputs
    if getattr(original, "_verl_tor_patched", False):
        return

    from verl.utils import tensordict_utils as tu

    def prepare_model_outputs(self, output, output_args, micro_batch, logits_processor_func):
        model_output = original(self, output, output_args, micro_batch, logits_processor_func)
        top_p = tu.get_non_tensor_data(data=micro_batch, key=TRUNCATED_ENTROPY_TOP_P, default=None)
        if top_p is not None:
            with torch.no_grad():
                model_output[TRUNCATED_ENTROPY] = _truncated_entropy_nested(
                    self, output, output_args, micro_batch, float(top_p)
                )
        return model_output

    prepare_model_outputs._verl_tor_patched = True
    prepare_model_outputs.__wrapped__ = original
    engine_cls.prepare_model_outputs = prepare_model_outputs
