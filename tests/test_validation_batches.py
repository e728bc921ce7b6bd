"""Validation in batches (``data.val_batch_size``) reports the accuracy of validation in one batch, through veRL's
own ``PPOTrainer._validate`` and metric code, while TransferQueue holds at most one batch of samples.

veRL 0.9.1 makes the whole validation set one batch unless ``data.val_batch_size`` is set, and TransferQueue keeps
every sample (with its float32 ``pixel_values``) until the batch ends, so ``recipes/eval.sh`` sets a batch size.
Here the trainer is veRL's, built from a CPU config with its real dataset and dataloader (the tiny model's
processor, synthetic colour images); only what needs Ray is replaced: the rollout (each sample's accuracy is a fixed
function of its row and sample number), the replay buffer and TransferQueue (an in-memory store of the fields
``_validate`` reads). The expected accuracy is computed from the parquet file, independently of veRL.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

VAL_ROWS = 10
SAMPLES = 3  # val_kwargs.n
DATA_SOURCE = "verl_tor/colour"


def sample_accuracy(index: int, sample: int) -> float:
    """Accuracy of response ``sample`` to validation row ``index``: varied across rows and samples."""
    return 1.0 if index % 3 == 0 or (sample == 0 and index % 2 == 0) else 0.0


class FakeTransferQueue:
    """The ``transfer_queue`` calls of ``_validate`` (kv_batch_put, kv_batch_get, kv_clear) on a dict; counts the
    samples it holds at once."""

    def __init__(self):
        self.samples: dict[str, dict] = {}
        self.peak = 0

    def kv_batch_put(self, keys, partition_id, tags=None, fields=None):
        assert partition_id == "val"  # prompt markers only; the samples come from the rollout below

    def add(self, samples: dict[str, dict]) -> None:
        self.samples.update(samples)
        self.peak = max(self.peak, len(self.samples))

    def kv_batch_get(self, keys, partition_id, select_fields):
        from verl.utils import tensordict_utils as tu

        rows = [self.samples[key] for key in keys]
        data = {}
        for name in select_fields:
            values = [row[name] for row in rows]
            if name in ("prompts", "responses"):
                data[name] = tu.nested_tensor_from_tensor_list(values)
            elif isinstance(values[0], torch.Tensor):
                data[name] = torch.stack(values)
            else:
                data[name] = values
        return tu.get_tensordict(data)

    def kv_clear(self, keys, partition_id):
        for key in keys:
            del self.samples[key]


class FakeRollout:
    """Agent loop + replay buffer: each prompt's SAMPLES responses go into the store, keyed like veRL's
    (``<uid>_<session>_<turn>``); ``sample`` hands back the ones of the batch just generated."""

    def __init__(self, store: FakeTransferQueue):
        self.store = store
        self.pending: list[str] = []
        self.batch_accuracies: list[list[float]] = []

    def generate_sequences(self, batch) -> None:
        samples = {}
        for uid, reward_model, extra_info in zip(batch["uid"], batch["reward_model"], batch["extra_info"], strict=True):
            for sample in range(SAMPLES):
                acc = sample_accuracy(int(extra_info["index"]), sample)
                samples[f"{uid}_{sample}_0"] = {
                    "uid": uid,
                    "prompts": torch.tensor([5, 6, 7]),
                    "responses": torch.tensor([8, 9]),
                    "rm_scores": torch.tensor([0.0, acc]),
                    "num_turns": torch.tensor(2),
                    "reward_model": dict(reward_model),
                    "data_source": DATA_SOURCE,
                    "extra_fields": {"reward_extra_info": {"acc": acc}},
                }
        self.pending = list(samples)
        self.batch_accuracies.append([row["rm_scores"][-1].item() for row in samples.values()])
        self.store.add(samples)

    def sample(self, global_steps, partition_id, batch_size):
        assert len(self.pending) == batch_size * SAMPLES
        return SimpleNamespace(keys=self.pending, partition_id=partition_id), None


@pytest.fixture(scope="module")
def trainer_config(tiny_model_dir, tmp_path_factory):
    from verl_tor.testing.actor_engine import compose_ppo_config
    from verl_tor.testing.cpu_overrides import cpu_overrides
    from verl_tor.testing.synthetic_data import write_dataset

    data_dir = str(tmp_path_factory.mktemp("validation_data"))
    write_dataset(data_dir, train=4, val=VAL_ROWS, seed=3)
    overrides = cpu_overrides(tiny_model_dir, data_dir, str(tmp_path_factory.mktemp("out"))) + [
        f"actor_rollout_ref.rollout.val_kwargs.n={SAMPLES}",
        "data.filter_overlong_prompts_workers=null",
    ]
    config = compose_ppo_config(overrides)
    config.transfer_queue.enable = True
    OmegaConf.resolve(config)
    return config, f"{data_dir}/val.parquet"


def validate(config, val_batch_size: int | None, monkeypatch) -> tuple[dict, FakeTransferQueue, FakeRollout]:
    """veRL's ``_validate`` on the real trainer with ``data.val_batch_size``; returns its metrics and the fakes."""
    from verl.trainer.ppo.v1 import get_trainer_cls, trainer_base

    config = copy.deepcopy(config)
    config.data.val_batch_size = val_batch_size
    trainer = get_trainer_cls(config.trainer.v1.trainer_mode)(config=config)
    trainer._init_tokenizer()
    trainer._init_dataloader()
    store = FakeTransferQueue()
    rollout = FakeRollout(store)
    monkeypatch.setattr(trainer_base, "tq", store)
    trainer.agent_loop_manager = rollout
    trainer.replay_buffer = rollout
    trainer.reward_loop_manager = SimpleNamespace(reward_loop_worker_handles=["reward computed in the rollout"])
    trainer.global_steps = 0
    return trainer._validate(), store, rollout


def test_batched_validation_reports_the_accuracy_of_one_batch(trainer_config, monkeypatch):
    config, val_file = trainer_config
    rows = pd.read_parquet(val_file)
    per_prompt = [
        sum(sample_accuracy(int(info["index"]), s) for s in range(SAMPLES)) / SAMPLES for info in rows["extra_info"]
    ]
    expected = sum(per_prompt) / len(per_prompt)
    metric = f"val-core/{DATA_SOURCE}/acc/mean@{SAMPLES}"

    whole, whole_store, whole_rollout = validate(config, None, monkeypatch)
    batched, batched_store, batched_rollout = validate(config, 3, monkeypatch)

    assert [len(accs) // SAMPLES for accs in batched_rollout.batch_accuracies] == [3, 3, 3, 1]
    assert [len(accs) // SAMPLES for accs in whole_rollout.batch_accuracies] == [VAL_ROWS]
    assert batched[metric] == pytest.approx(expected) and whole[metric] == pytest.approx(expected)
    # The test can tell: averaging the batches' means would give another number with these batch sizes.
    batch_means = [sum(accs) / len(accs) for accs in batched_rollout.batch_accuracies]
    assert abs(sum(batch_means) / len(batch_means) - expected) > 0.01
    # Every metric veRL reports is the same, not only the mean (best@N, worst@N, ... bootstrap on the same samples).
    assert batched.keys() == whole.keys()
    for name, value in whole.items():
        assert batched[name] == pytest.approx(value), name
    # What the batch size is for: TransferQueue holds one batch of samples at a time, not the validation set.
    assert (batched_store.peak, whole_store.peak) == (3 * SAMPLES, VAL_ROWS * SAMPLES)
    assert not batched_store.samples and not whole_store.samples
