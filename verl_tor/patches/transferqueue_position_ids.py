"""veRL 0.9.1 + TransferQueue: equal-length Qwen-VL batches get corrupted 3-D position ids in the actor update.

Qwen-VL position ids are one (4, L) tensor per sample (text row + 3 M-RoPE rows), packed as a jagged nested tensor
of shape (B, 4, j) with the ragged dimension last. TransferQueue packs a fetched field with
``torch.nested.as_nested_tensor(values, layout=torch.jagged)``; torch makes dimension 1 ragged when all samples have
the same shape, so a batch whose sequences all have the same total length (fixed-size images, responses cut at the
maximum length) arrives as (B, j=4, L), values (4B, L). ``verl.utils.tensordict_utils.maybe_fix_3d_position_ids``
(called at the top of ``train_mini_batch``, ``train_batch`` and ``infer_batch``) assumes the ragged dimension is
last and only its ``_ragged_idx`` attribute was lost in pickling, so it sets ``_ragged_idx = 2`` on this tensor too;
the update then fails with ``split_with_sizes expects split_sizes to sum exactly to ...``.

We rebuild such a tensor with its ragged dimension last before veRL's fix runs, and leave every other layout to
veRL. This hits GPU runs as much as CPU runs.
"""

from __future__ import annotations

from types import ModuleType

import torch

from verl_tor.import_hooks import call_after_import

TARGET_MODULE = "verl.utils.tensordict_utils"
# Modules that bind ``maybe_fix_3d_position_ids`` by name at import time.
IMPORTING_MODULES = ("verl.workers.engine_workers", "verl.workers.engine.base", "verl.workers.engine_workers_tinker")


def ragged_in_rows(position_ids: torch.Tensor) -> bool:
    """Whether a nested (B, R, L) position-id tensor is ragged in dimension 1 with every sample an (R, L) block.

    A (R, L)-per-sample tensor packed ragged-in-rows has values of shape (B*R, L) and offsets 0, R, 2R, ... The
    layout veRL expects has values (R, total length), and pickling may reset its ``_ragged_idx`` to 1; then
    ``values.size(0)`` (R) differs from ``offsets[-1]`` (the total length), unless the whole batch is R tokens
    long, where both readings give the same samples.
    """
    if not (position_ids.is_nested and position_ids.dim() == 3 and position_ids._ragged_idx == 1):
        return False
    values, offsets = position_ids.values(), position_ids.offsets()
    rows = offsets.diff()
    return rows.numel() > 0 and values.size(0) == int(offsets[-1]) and bool((rows == rows[0]).all())


def install(tensordict_utils: ModuleType) -> None:
    """Wrap ``maybe_fix_3d_position_ids`` in veRL's module and in every module that imported it by name."""
    original = tensordict_utils.maybe_fix_3d_position_ids
    if getattr(original, "_verl_tor_patched", False):
        return

    def maybe_fix_3d_position_ids(data):
        if "position_ids" in data.keys() and ragged_in_rows(data["position_ids"]):
            samples = list(data["position_ids"].unbind(0))
            data["position_ids"] = tensordict_utils.nested_tensor_from_tensor_list(samples, ragged_idx=2)
        return original(data)

    maybe_fix_3d_position_ids._verl_tor_patched = True
    maybe_fix_3d_position_ids.__wrapped__ = original
    tensordict_utils.maybe_fix_3d_position_ids = maybe_fix_3d_position_ids

    def rebind(module: ModuleType) -> None:
        if getattr(module, "maybe_fix_3d_position_ids", None) is original:
            module.maybe_fix_3d_position_ids = maybe_fix_3d_position_ids

    for name in IMPORTING_MODULES:
        call_after_import(name, rebind)
