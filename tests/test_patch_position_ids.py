"""TransferQueue packs equal-length Qwen-VL position ids ragged in the wrong dimension; our patch rebuilds them."""

import pickle

import pytest
import torch
from tensordict import TensorDict


def _position_ids(lengths: list[int]) -> list[torch.Tensor]:
    """Per-sample (4, L) position ids with values unique across the batch (text row + 3 M-RoPE rows)."""
    return [torch.arange(4 * length).reshape(4, length) + 1000 * i for i, length in enumerate(lengths)]


def _transferqueue_batch(samples: list[torch.Tensor]) -> TensorDict:
    """What a worker gets from TransferQueue: the storage manager packs per-sample tensors of a field."""
    from transfer_queue.storage.managers.simple_storage_manager import AsyncSimpleStorageManager

    packed = AsyncSimpleStorageManager._pack_field_values(samples)
    return TensorDict({"position_ids": packed}, batch_size=[len(samples)])


def _samples_after_fix(fix, data: TensorDict) -> list[torch.Tensor]:
    """Apply ``fix`` and take the batch apart like veRL's mini-batch iterator does (``unbind``)."""
    from verl.utils import tensordict_utils

    fix(data)
    selected = tensordict_utils.index_select_tensor_dict(data, torch.arange(len(data)))
    return list(selected["position_ids"].unbind(0))


def test_plugin_patched_every_binding():
    import verl.workers.engine.base as engine_base
    import verl.workers.engine_workers as engine_workers
    from verl.utils import tensordict_utils

    patched = tensordict_utils.maybe_fix_3d_position_ids
    assert getattr(patched, "_verl_tor_patched", False)
    assert engine_workers.maybe_fix_3d_position_ids is patched
    assert engine_base.maybe_fix_3d_position_ids is patched


def test_equal_length_batch_fails_without_patch_and_works_with_it():
    from verl.utils import tensordict_utils

    samples = _position_ids([20, 20, 20, 20])
    assert _transferqueue_batch(samples)["position_ids"]._ragged_idx == 1  # the layout TransferQueue produces

    unpatched = tensordict_utils.maybe_fix_3d_position_ids.__wrapped__
    with pytest.raises(RuntimeError, match="split_with_sizes"):
        _samples_after_fix(unpatched, _transferqueue_batch(samples))

    fixed = _samples_after_fix(tensordict_utils.maybe_fix_3d_position_ids, _transferqueue_batch(samples))
    assert len(fixed) == len(samples)
    for got, expected in zip(fixed, samples, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("pickled", [False, True])
def test_ragged_batch_is_left_to_verl(pickled):
    """Unequal lengths arrive ragged last (pickling resets ``_ragged_idx`` to 1): veRL's own fix handles them."""
    from verl.utils import tensordict_utils

    samples = _position_ids([3, 7, 5])
    data = _transferqueue_batch(samples)
    if pickled:
        data = pickle.loads(pickle.dumps(data.consolidate()))
    for fix in (tensordict_utils.maybe_fix_3d_position_ids, tensordict_utils.maybe_fix_3d_position_ids.__wrapped__):
        fixed = _samples_after_fix(fix, data.clone())
        for got, expected in zip(fixed, samples, strict=True):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_single_sample_and_text_position_ids_untouched():
    from verl.utils import tensordict_utils

    from verl_tor.patches.transferqueue_position_ids import ragged_in_rows

    single = _transferqueue_batch(_position_ids([5]))
    assert _samples_after_fix(tensordict_utils.maybe_fix_3d_position_ids, single)[0].shape == (4, 5)
    text = torch.nested.as_nested_tensor([torch.arange(5), torch.arange(3)], layout=torch.jagged)
    assert not ragged_in_rows(text)
