"""The Ulysses sequence-parallel branch of ToR's truncated entropy, with veRL's own gather over two gloo ranks.

Under ``ulysses_sequence_parallel_size > 1`` each rank of the sequence-parallel group holds a contiguous slice of
the packed (and padded) sequence's logits; ``engine_truncated_entropy`` scores its slice, gathers the scores with
the engine's ``_gather_and_unpad_packed`` (veRL's ``gather_outputs_and_unpad``) and then picks the response
positions. A main_ppo run with Ulysses needs flash-attn's varlen kernel in every worker process (remove-padding),
which a CPU cannot run; here the branch runs in two real processes whose gloo group carries veRL's collective,
sliced the way veRL's engine slices (``ulysses_pad``: padded at the tail to a multiple of the group), and its result
must equal the single-rank branch and the float64 brute force at the response positions.

Every branch (remove-padding, padded, Ulysses) gathers the response positions' logits a chunk of positions at a time:
indexing them all at once would copy up to 8 GB per 16k-token micro-batch at Qwen3.5's V = 248,320.

Run as a script, this file is the two ranks (``python tests/test_ulysses_entropy.py OUT_FILE``).
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

SP_SIZE = 2
TOP_P = 0.95
PROMPT_LENGTHS, RESPONSE_LENGTHS = [5, 3, 6], [4, 2, 5]  # 25 packed tokens: odd, so the tail is padded
VOCAB = 300


def packed_micro_batch(response_lengths=RESPONSE_LENGTHS, vocab=VOCAB):
    """veRL's packed micro-batch fields ToR reads (nested input ids and responses), logits and temperatures."""
    from tensordict import TensorDict

    from verl_tor.nested import nested_rows

    generator = torch.Generator().manual_seed(0)
    lengths = [p + r for p, r in zip(PROMPT_LENGTHS, response_lengths, strict=True)]
    micro_batch = TensorDict(
        {
            "input_ids": nested_rows([torch.randint(0, vocab, (n,), generator=generator) for n in lengths]),
            "responses": nested_rows([torch.randint(0, vocab, (n,), generator=generator) for n in response_lengths]),
        },
        batch_size=[len(lengths)],
    )
    # Peaked and spread rows alike; per-token temperatures as the engine passes them.
    logits = torch.randn(sum(lengths), vocab, generator=generator) * torch.linspace(0.5, 6.0, sum(lengths))[:, None]
    temperature = torch.full((sum(lengths),), 0.7)
    return micro_batch, logits, temperature


def truncated_entropy_on_rank(rank: int, world_size: int, port: int, out_file: str) -> None:
    import torch.distributed as dist
    from verl.utils import tensordict_utils as tu
    from verl.utils.ulysses import set_ulysses_sequence_parallel_group, ulysses_pad
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    from verl_tor.engine_truncated_entropy import _truncated_entropy_of_responses

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    set_ulysses_sequence_parallel_group(dist.group.WORLD)
    micro_batch, logits, temperature = packed_micro_batch()
    tu.assign_non_tensor(micro_batch, use_remove_padding=True)
    # The engine pads the packed sequence at the tail to a multiple of the group and each rank computes a slice.
    _, _, pad_size = ulysses_pad(torch.zeros(1, len(logits), dtype=torch.long), sp_size=world_size)
    logits = torch.cat([logits, torch.zeros(pad_size, VOCAB)])
    temperature = torch.cat([temperature, torch.ones(pad_size)])
    part = len(logits) // world_size
    local = slice(rank * part, (rank + 1) * part)
    engine = SimpleNamespace(use_ulysses_sp=True)
    engine._gather_and_unpad_packed = functools.partial(FSDPEngineWithLMHead._gather_and_unpad_packed, engine)
    output = SimpleNamespace(logits=logits[local].unsqueeze(0))
    output_args = {"temperature_rmpad": temperature[local], "pad_size": pad_size}
    with torch.no_grad():
        entropy = _truncated_entropy_of_responses(engine, output, output_args, micro_batch, TOP_P)
    if rank == 0:
        torch.save({"values": entropy.values(), "offsets": entropy.offsets(), "pad_size": pad_size}, out_file)
    dist.destroy_process_group()


def response_rows(response_lengths=RESPONSE_LENGTHS) -> np.ndarray:
    """Brute force: position t's logits predict token t + 1; a response ends its sequence."""
    ends = np.cumsum([p + r for p, r in zip(PROMPT_LENGTHS, response_lengths, strict=True)])
    return np.concatenate([np.arange(end - r - 1, end - 1) for end, r in zip(ends, response_lengths, strict=True)])


class LargestAllocation(TorchDispatchMode):
    """Records the bytes of the largest storage any operation allocates (views and in-place results, which share an
    input's storage, excluded)."""

    def __init__(self):
        super().__init__()
        self.nbytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if type(t) is torch.Tensor}
        for tensor in tree_leaves(out):
            if type(tensor) is torch.Tensor and tensor.untyped_storage().data_ptr() not in inputs:
                self.nbytes = max(self.nbytes, tensor.untyped_storage().nbytes())
        return out


@pytest.mark.parametrize("branch", ["remove_padding", "padded", "ulysses"])
def test_each_branch_gathers_the_logits_a_chunk_of_positions_at_a_time(branch, monkeypatch):
    from reference_math import reference_truncated_entropy
    from verl.utils import tensordict_utils as tu
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    from verl_tor import engine_truncated_entropy

    chunk, vocab, response_lengths = 4, 10_000, [12, 7, 10]  # 29 response positions, over 7 chunks
    monkeypatch.setattr(engine_truncated_entropy, "ROWS_PER_CHUNK", chunk)
    micro_batch, logits, _ = packed_micro_batch(response_lengths, vocab)
    lengths = [p + r for p, r in zip(PROMPT_LENGTHS, response_lengths, strict=True)]
    sample_temperature = torch.tensor([0.7, 1.0, 1.3])
    temperature = torch.repeat_interleave(sample_temperature, torch.tensor(lengths))
    engine = SimpleNamespace(use_ulysses_sp=branch == "ulysses")
    # Without a sequence-parallel group veRL's gather returns the one rank's scores (the two-rank gather is above).
    engine._gather_and_unpad_packed = functools.partial(FSDPEngineWithLMHead._gather_and_unpad_packed, engine)
    tu.assign_non_tensor(micro_batch, use_remove_padding=branch != "padded")
    if branch == "padded":  # (bsz, max_len, V), right-padded
        output = SimpleNamespace(logits=torch.nn.utils.rnn.pad_sequence(list(logits.split(lengths)), batch_first=True))
        output_args = {"temperature": sample_temperature}
    else:
        output = SimpleNamespace(logits=logits.unsqueeze(0))
        output_args = {"temperature_rmpad": temperature, "pad_size": 0}

    with torch.no_grad(), LargestAllocation() as largest:
        entropy = engine_truncated_entropy._truncated_entropy_of_responses(
            engine, output, output_args, micro_batch, TOP_P
        )

    rows = response_rows(response_lengths)
    expected = reference_truncated_entropy(logits[rows] / temperature[rows, None], TOP_P)
    np.testing.assert_allclose(entropy.values().numpy(), expected, rtol=1e-5, atol=1e-6)
    # One chunk's rows in float64 at most (the scoring's widest dtype); all 29 positions' logits would be 29 rows.
    assert largest.nbytes <= chunk * vocab * 8 < len(rows) * vocab * logits.element_size()


def test_ulysses_branch_equals_the_single_rank_branch_and_the_brute_force(tmp_path):
    from reference_math import reference_truncated_entropy
    from verl.utils import tensordict_utils as tu

    from verl_tor.engine_truncated_entropy import _truncated_entropy_of_responses

    out_file = tmp_path / "ulysses.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, __file__, str(out_file)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    ulysses = torch.load(out_file)
    assert ulysses["pad_size"] > 0  # the tail padding is exercised

    micro_batch, logits, temperature = packed_micro_batch()
    tu.assign_non_tensor(micro_batch, use_remove_padding=True)
    single = _truncated_entropy_of_responses(
        SimpleNamespace(use_ulysses_sp=False),
        SimpleNamespace(logits=logits.unsqueeze(0)),
        {"temperature_rmpad": temperature, "pad_size": 0},
        micro_batch,
        TOP_P,
    )
    torch.testing.assert_close(ulysses["offsets"], single.offsets())
    torch.testing.assert_close(ulysses["values"], single.values(), rtol=0, atol=0)
    expected = reference_truncated_entropy(logits[response_rows()] / 0.7, TOP_P)
    np.testing.assert_allclose(ulysses["values"].numpy(), expected, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    mp.spawn(truncated_entropy_on_rank, args=(SP_SIZE, free_port, sys.argv[1]), nprocs=SP_SIZE)
