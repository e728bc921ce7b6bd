"""Truncated (top-p) entropy from the logits of veRL's old-log-prob forward, in that same forward.

ToR's reasoning score (Eq. 5) is the entropy of the renormalized top-p set of each next-token distribution.
Only the forward that computes the old log-probs has the logits, so we attach to veRL's FSDP engine
(``FSDPEngineWithLMHead.prepare_model_outputs``): when a micro-batch carries the meta key
``TRUNCATED_ENTROPY_TOP_P``, the engine's output gains a field ``TRUNCATED_ENTROPY``: a nested
``(bsz, response_len)`` tensor aligned with the response tokens, like the old log-probs after veRL's
``response_from_nested``. Without the meta key nothing changes. The temperature is the one veRL
applies to the same logits (the rollout temperature), so the score describes the distribution that was sampled.
"""

from __future__ import annotations

from types import ModuleType

import torch

from verl_tor.methods.scores import truncated_entropy

TARGET_MODULE = "verl.workers.engine.fsdp.transformer_impl"
TRUNCATED_ENTROPY_TOP_P = "tor_entropy_top_p"
TRUNCATED_ENTROPY = "tor_truncated_entropy"
# Rows of the (tokens, vocab) logits gathered, scaled and scored at a time: bounds the float32 copy to this many rows
# (256 rows x V = 248,320 x 4 bytes = 254 MB), whatever the number of response positions.
ROWS_PER_CHUNK = 256


def truncated_entropy_of_rows(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: float,
    index: tuple[torch.Tensor, ...] | None = None,
) -> torch.Tensor:
    """Top-p entropy of ``logits[index] / temperature`` row by row, gathering ``ROWS_PER_CHUNK`` rows at a time.

    Indexing with index tensors copies every selected row at once (at V = 248,320, a 16k-token micro-batch is 8 GB
    in bf16); gathering a chunk, scoring it and dropping it bounds the extra memory by the chunk.

    Args:
        logits: ``[*lead, V]`` raw logits (any float dtype).
        temperature: ``[N]`` temperature of each selected row.
        top_p: nucleus mass of Eq. 5.
        index: one ``[N]`` long tensor per leading dimension of ``logits``, selecting the rows to score; ``None``
            scores every row of a ``[N, V]`` ``logits``.

    Returns:
        ``[N]`` float32 entropies.
    """
    out = torch.empty(temperature.shape[0], dtype=torch.float32, device=logits.device)
    for start in range(0, temperature.shape[0], ROWS_PER_CHUNK):
        rows = slice(start, start + ROWS_PER_CHUNK)
        chunk = logits[rows] if index is None else logits[tuple(i[rows] for i in index)]
        # bf16 / float32 promotes to float32: one float32 copy of the chunk, never an in-place change of veRL's logits.
        scaled = chunk / temperature[rows].float().clamp(min=1e-8).unsqueeze(-1)
        out[rows] = truncated_entropy(scaled, top_p)
    return out


def _response_positions(micro_batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed positions whose logits predict the response tokens, and the response offsets.

    Position t's logits predict token t + 1, so a response of n tokens ending at packed offset ``end`` is
    predicted by positions ``[end - n - 1, end - 1)`` (the alignment of veRL's ``response_from_nested``).
    """
    seq_offsets = micro_batch["input_ids"].offsets()
    response_lens = micro_batch["responses"].offsets().diff().to(seq_offsets.device)
    response_offsets = torch.zeros(len(response_lens) + 1, dtype=torch.long, device=seq_offsets.device)
    response_offsets[1:] = torch.cumsum(response_lens, 0)
    starts = seq_offsets[1:] - response_lens - 1
    # For the k-th response token of sample i: start_i + k, with k = flat index − response_offsets[i].
    within = torch.arange(int(response_offsets[-1]), device=seq_offsets.device)
    within = within - torch.repeat_interleave(response_offsets[:-1], response_lens)
    return torch.repeat_interleave(starts, response_lens) + within, response_offsets


def _truncated_entropy_of_responses(engine, output, output_args: dict, micro_batch, top_p: float) -> torch.Tensor:
    """The truncated entropy at the response positions only, as a nested ``(bsz, response_len)`` tensor.

    Image prompts are mostly vision tokens; scoring only the positions that predict response tokens keeps the
    cost proportional to the response length.
    """
    from verl.utils import tensordict_utils as tu

    if getattr(output, "logits", None) is None:
        raise RuntimeError(
            "tor.entropy_top_p < 1 needs the logits of the old-log-prob forward; fused kernels do not return them. "
            "Set actor_rollout_ref.model.use_fused_kernels=False or tor.entropy_top_p=1.0."
        )
    positions, response_offsets = _response_positions(micro_batch)
    logits = output.logits
    if hasattr(logits, "full_tensor"):  # tensor parallel: vocab-sharded DTensor
        logits = logits.full_tensor()
    if tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True):
        logits = logits.squeeze(0)  # (total_nnz / sp + pad, V)
        temperature = output_args["temperature_rmpad"]
        if getattr(engine, "use_ulysses_sp", False):
            # Each rank holds a slice of the packed sequence: score it all, gather, then pick the responses.
            entropy = truncated_entropy_of_rows(logits, temperature, top_p)
            entropy = engine._gather_and_unpad_packed(entropy, output_args["pad_size"])[positions]
        else:
            entropy = truncated_entropy_of_rows(logits, temperature[positions], top_p, index=(positions,))
    else:
        # (bsz, max_len, V), right-padded: sample i's packed position p is row p - offset_i of logits[i].
        seq_offsets = micro_batch["input_ids"].offsets().to(positions.device)
        sample = torch.repeat_interleave(
            torch.arange(len(response_offsets) - 1, device=positions.device), response_offsets.diff()
        )
        temperature = output_args["temperature"].to(logits.device)[sample]
        entropy = truncated_entropy_of_rows(logits, temperature, top_p, index=(sample, positions - seq_offsets[sample]))
    return torch.nested.nested_tensor_from_jagged(
        entropy, response_offsets, max_seqlen=int(response_offsets.diff().max()) if len(entropy) else 0
    )


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
                model_output[TRUNCATED_ENTROPY] = _truncated_entropy_of_responses(
                    self, output, output_args, micro_batch, float(top_p)
                )
        return model_output

    prepare_model_outputs._verl_tor_patched = True
    prepare_model_outputs.__wrapped__ = original
    engine_cls.prepare_model_outputs = prepare_model_outputs
