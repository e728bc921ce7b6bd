"""Warm start of the tiny model (any family) through veRL's own SFT trainer, on CPU: the answer format and the text-side
rule, not seeing.

A randomly initialised tiny model rarely emits "colour, number, number, then stop", so RL from scratch would
spend its budget on the format. Every warm-start row pairs a task prompt with a **random** colour
(:func:`verl_tor.demo.task.sft_answer`), that colour's number from the table, and a pick drawn uniformly among
the right ones. So the model learns the format, the table lookup (number given the colour word it said) and the
pick rule with a genuinely spread-out choice, but nothing about which colour it sees: its accuracy stays at
chance (1/4) and RL has the seeing left to learn.

A quarter of the rows (``TEXT_ONLY_FRACTION``) show the prompt without its picture, as a real multimodal model has
seen text-only prompts. ToR's perception score compares each token's log-probability with and without the
picture; a model that never saw a prompt without one is out of its training distribution there, and the score
then measures that format change instead of seeing (measured without these rows: the pick and ``<|im_end|>`` had
|Δ log π| of 4-7 nats already at step 1, the colour word 0.03, and T_p's precision for colour words was 0.00-0.08).

It runs veRL 0.9.1's ``SFTTrainer`` (``verl/trainer/sft_trainer.py``, config ``sft_trainer_engine.yaml``: the
multi-turn SFT dataset with images, the FSDP engine, ``sft_loss``) unchanged, in one process. Only the launch
differs from ``torchrun -m verl.trainer.sft_trainer``: veRL's ``initialize_global_process_group`` builds the
backend ``cpu:gloo,<device>:<backend>`` = ``cpu:gloo,cpu:gloo`` on the CPU platform, which torch rejects, so this
module opens the single-rank gloo group itself and then builds and fits veRL's trainer.

    python -m verl_tor.demo.warm_start --model TINY_MODEL --out DIR [--steps 40 --batch-size 16 --lr 2e-3]

writes ``DIR/sft_data/train.parquet``, veRL's checkpoint under ``DIR/checkpoints`` and the warm-started model as a
float32 HF folder ``DIR/model`` (what ``actor_rollout_ref.model.path`` loads). With ``trainer.logger`` including
``file``, veRL's per-step metrics (``train/loss``) go to ``$VERL_FILE_LOGGER_PATH``.
"""

from __future__ import annotations

import argparse
import os
import socket
import time

import numpy as np
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

from verl_tor.demo.task import PROMPT_TEXT, TABLE, make_rows, picks, sft_answer

# Cross-entropy floor of the warm-start target per assistant token (veRL's SFT loss covers the whole turn after its
# header: colour, number, pick, <|im_end|>, newline): a uniform colour, a certain number, a uniform pick among the
# right ones, a certain end.
SFT_LOSS_FLOOR = float((np.log(len(TABLE)) + np.mean([np.log(len(picks(n))) for n in TABLE.values()])) / 5)
TEXT_ONLY_FRACTION = 0.25


def sft_rows(n: int, seed: int) -> list[dict]:
    """``n`` rows of veRL's multi-turn SFT schema (``messages``, with an ``<image>`` placeholder where the row has
    a picture, and ``images``).

    The pictures and prompt are those of the RL task (:func:`verl_tor.demo.task.make_rows`), a
    ``TEXT_ONLY_FRACTION`` of them without the picture; the assistant's answer is
    :func:`verl_tor.demo.task.sft_answer`, drawn independently of the picture.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for row in make_rows(n, "sft", rng):
        prompt, images = row["prompt"], row["images"]
        if rng.random() < TEXT_ONLY_FRACTION:
            prompt, images = [{"role": "user", "content": PROMPT_TEXT}], []
        rows.append({"messages": [*prompt, {"role": "assistant", "content": sft_answer(rng)}], "images": images})
    return rows


class MixedSFTDataset(MultiTurnSFTDataset):
    """veRL's multi-turn SFT dataset for batches that mix rows with and without pictures.

    veRL's dataset leaves ``multi_modal_inputs`` out of a row without images, and its collator takes the keys of a
    batch from the batch's first row: a text-only first row drops the pictures of the others. Here such a row holds
    ``multi_modal_inputs=None``, which veRL's engine skips as a text-only row (``extract_multi_modal_inputs``).
    Selected with ``data.custom_cls``.
    """

    def __getitem__(self, item: int) -> dict:
        row = super().__getitem__(item)
        row.setdefault("multi_modal_inputs", None)
        return row


def write_sft_dataset(out_dir: str, n: int, seed: int) -> str:
    """Write ``out_dir/train.parquet`` with :func:`sft_rows`; returns its path."""
    import pandas as pd

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "train.parquet")
    pd.DataFrame(sft_rows(n, seed)).to_parquet(path)
    return path


def sft_overrides(
    model_path: str, train_file: str, checkpoint_dir: str, steps: int, batch_size: int, lr: float, seed: int
) -> list[str]:
    """Overrides of veRL's ``sft_trainer_engine`` config for a CPU run on the tiny model."""
    return [
        f"model.path={model_path}",
        f"data.train_files={train_file}",
        f"data.train_batch_size={batch_size}",
        "data.custom_cls.path=pkg://verl_tor.demo.warm_start",
        "data.custom_cls.name=MixedSFTDataset",
        f"data.micro_batch_size_per_gpu={batch_size}",
        "data.use_dynamic_bsz=false",
        "data.max_length=256",
        # The dataset runs the processor per row; worker processes would only compete for the 2 cores.
        "data.num_workers=0",
        # CPU engine as in the RL runs: FSDP2, sdpa, no flash-attn padding removal, no torch.compile.
        "model.use_remove_padding=false",
        "model.enable_gradient_checkpointing=false",
        "+model.override_config.attn_implementation=sdpa",
        "engine.strategy=fsdp2",
        "engine.use_torch_compile=false",
        # veRL's FSDP engine trains under bf16 mixed precision unless `mixed_precision` says otherwise (its
        # `dtype` key is not read there); bf16 matmuls are emulated on most CPUs and made a step ~3x slower.
        "+engine.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}",
        f"engine.seed={seed}",
        f"optim.lr={lr}",
        "trainer.device=cpu",
        f"trainer.total_training_steps={steps}",
        f"trainer.seed={seed}",
        "trainer.logger=[console,file]",
        "trainer.project_name=verl_tor_demo",
        "trainer.experiment_name=warm_start",
        f"trainer.default_local_dir={checkpoint_dir}",
        "trainer.resume_mode=disable",
        # Only the HF model is needed (the RL runs load it); no optimizer or FSDP shards.
        "checkpoint.save_contents=[hf_model]",
    ]


def free_port() -> int:
    """A TCP port that is free right now on the loopback interface (for the single rank's rendezvous store)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_verl_sft(overrides: list[str]) -> None:
    """Compose veRL's ``sft_trainer_engine`` config with ``overrides`` and fit veRL's ``SFTTrainer`` on one rank."""
    import torch.distributed as dist
    import verl.trainer.config
    from hydra import compose, initialize_config_dir
    from verl.trainer.sft_trainer import SFTTrainer

    with initialize_config_dir(config_dir=os.path.dirname(verl.trainer.config.__file__), version_base=None):
        config = compose(config_name="sft_trainer_engine", overrides=overrides)
    # What `torchrun --nproc_per_node=1` would export; veRL's worker reads the ranks and address from the environment.
    os.environ.update(
        {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    )
    dist.init_process_group("gloo", init_method="env://")
    try:
        SFTTrainer(config=config).fit()
    finally:
        dist.destroy_process_group()


def export_float32(hf_dir: str, out_dir: str) -> str:
    """Copy veRL's ``huggingface/`` checkpoint folder to ``out_dir`` as float32.

    veRL writes the (float32) weights under a config built with ``torch_dtype=bfloat16``; rewriting the folder with
    transformers makes config and weights agree, so every loader that follows the config gets float32.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(hf_dir, dtype=torch.float32)
    model.save_pretrained(out_dir)
    AutoProcessor.from_pretrained(hf_dir).save_pretrained(out_dir)
    return out_dir


def warm_start(model_path: str, out_dir: str, steps: int, batch_size: int = 16, lr: float = 2e-3, seed: int = 0) -> str:
    """Format-only SFT of ``model_path`` for ``steps`` steps; returns the float32 HF folder ``out_dir/model``."""
    train_file = write_sft_dataset(os.path.join(out_dir, "sft_data"), steps * batch_size, seed)
    checkpoint_dir = os.path.join(out_dir, "checkpoints")
    run_verl_sft(sft_overrides(model_path, train_file, checkpoint_dir, steps, batch_size, lr, seed))
    hf_dir = os.path.join(checkpoint_dir, f"global_step_{steps}", "huggingface")
    return export_float32(hf_dir, os.path.join(out_dir, "model"))


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.demo.warm_start",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="tiny model folder (verl_tor.testing.tiny_model)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    model_dir = warm_start(args.model, args.out, args.steps, args.batch_size, args.lr, args.seed)
    print(f"warm-started model written to {model_dir} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
