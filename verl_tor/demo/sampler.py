"""veRL's sync replay buffer with the batch in a canonical order, for reproducible CPU runs.

veRL 0.9.1's V1 trainers read every rollout batch through a replay buffer over TransferQueue. Its sync
:class:`~verl.trainer.ppo.v1.replay_buffer.ReplayBuffer` returns the trajectories in the order they were stored,
i.e. in the order the concurrent agent loops finished, and their keys carry random uids (``uuid4``). That order
decides the mini-batches, the micro-batches and the float summation order of every gradient, so two runs with the
same seed drift apart. :class:`CanonicalReplayBuffer` keeps veRL's selection unchanged and only sorts the selected
trajectories by content: the dataset row (``index``, from ``extra_info.index``), then the response's token ids.
Same samples in, same batch order out, whatever the arrival order.

    trainer.v1.sampler.custom_sampler.path=pkg://verl_tor.demo.sampler
    trainer.v1.sampler.custom_sampler.name=CanonicalReplayBuffer

veRL passes custom samplers no group-filtering settings, and builds the custom class in every trainer mode: this
buffer (veRL's sync one) refuses an asynchronous ``trainer.v1.trainer_mode`` and DAPO's dynamic sampling
(``algorithm.filter_groups.enable``) at start-up instead of silently not doing them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import transfer_queue as tq
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer


def canonical_order(indices: Sequence[Any], responses: Sequence[Sequence[int]]) -> list[int]:
    """Positions of a batch sorted by (dataset row index, response token ids).

    Samples equal in both are interchangeable (same prompt row, same tokens), so any order of them gives the same
    batch.
    """
    return sorted(range(len(indices)), key=lambda i: (str(indices[i]), list(responses[i])))


def _as_list(value: Any) -> list:
    return value.tolist() if hasattr(value, "tolist") else list(value)


class CanonicalReplayBuffer(ReplayBuffer):
    """veRL's sync :class:`ReplayBuffer` whose batches come out in :func:`canonical_order`."""

    def _validate_mode_config(self) -> None:
        super()._validate_mode_config()
        # The ToR trainers report their base mode here ("sync" for tor_sync).
        if self.trainer_mode != "sync":
            raise ValueError(
                f"trainer.v1.sampler.custom_sampler.name=CanonicalReplayBuffer is veRL's sync replay buffer: "
                f"trainer.v1.trainer_mode must be sync or tor_sync, not {self.trainer_mode!r}"
            )
        # veRL gives custom samplers no filter settings; the trainer that owns the refill callback has them.
        config = getattr(getattr(self.refill_fn, "__self__", None), "config", None)
        filter_groups = config.algorithm.get("filter_groups", None) if config is not None else None
        if filter_groups is not None and filter_groups.get("enable", False):
            raise ValueError(
                "algorithm.filter_groups.enable=true with trainer.v1.sampler.custom_sampler.name="
                "CanonicalReplayBuffer: veRL passes custom samplers no group filtering, so DAPO's dynamic sampling "
                "would silently not run; use veRL's own replay buffer for DAPO"
            )

    def _materialize_batch(self, partition_id: str, selected_prompt_uids: list[str], partition_snapshot: dict):
        batch = super()._materialize_batch(partition_id, selected_prompt_uids, partition_snapshot)
        if not batch.keys:
            return batch
        data = tq.kv_batch_get(keys=batch.keys, partition_id=partition_id, select_fields=["index", "responses"])
        responses = [_as_list(row) for row in data["responses"].unbind(0)]
        batch.reorder(canonical_order(_as_list(data["index"]), responses))
        return batch
