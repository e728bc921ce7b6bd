"""``verl_tor.eval.prompts``: the evaluation settings' conversations, built by veRL's own dataset code selected
through ``data.custom_cls`` as ``recipes/eval.sh`` selects it, rendered by the tiny model's real chat template."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from verl_tor.eval.prompts import HARNESS_SYSTEM_PROMPT
from verl_tor.testing.synthetic_data import QUESTION, colour_image_png

# 56 x 56 pixels: 4 image tokens; 448 x 448: 256, over a 128-token budget only with the image.
SMALL, LARGE = 56, 448
VISION_BLOCK = re.compile(r"<\|vision_start\|>(?:<\|image_pad\|>)+<\|vision_end\|>")


@pytest.fixture()
def data_file(tmp_path) -> str:
    rng = np.random.default_rng(0)
    records = [
        {
            "data_source": "mathvista",
            "prompt": [{"role": "user", "content": f"<image>\n{QUESTION}"}],
            "images": [{"bytes": colour_image_png("red", rng, size=side)}],
            "reward_model": {"style": "rule", "ground_truth": "red"},
            "extra_info": {"split": "testmini", "index": index},
        }
        for index, side in enumerate((SMALL, LARGE))
    ]
    pd.DataFrame(records).to_parquet(tmp_path / "val.parquet")
    return str(tmp_path / "val.parquet")


def dataset(name: str, data_file: str, tiny_model_dir: str, tmp_path, max_prompt_length: int = 128):
    from verl.trainer.ppo.utils import create_rl_dataset
    from verl.utils import hf_processor, hf_tokenizer

    from verl_tor.testing.actor_engine import compose_ppo_config

    module = "verl_tor.launch.prompt_filter" if name == "FilterCountingRLHFDataset" else "verl_tor.eval.prompts"
    config = compose_ppo_config(
        [
            f"data.val_files=[{data_file}]",
            f"data.max_prompt_length={max_prompt_length}",
            "data.filter_overlong_prompts=true",
            "data.filter_overlong_prompts_workers=null",
            f"+data.cache_dir={tmp_path / 'cache'}",
            "+data.mm_processor_kwargs.min_pixels=3136",
            "+data.mm_processor_kwargs.max_pixels=262144",
            f"data.custom_cls.path=pkg://{module}",
            f"data.custom_cls.name={name}",
        ]
    ).data
    built = create_rl_dataset(config.val_files, config, hf_tokenizer(tiny_model_dir), hf_processor(tiny_model_dir))
    assert type(built).__name__ == name
    return built


def rendered(item: dict, tiny_model_dir: str) -> str:
    """The prompt text veRL's agent loop renders from the item's ``raw_prompt``."""
    from verl.utils import hf_processor

    return hf_processor(tiny_model_dir).apply_chat_template(
        item["raw_prompt"], add_generation_prompt=True, tokenize=False
    )


def test_image_removed_is_the_conversation_without_its_vision_block(data_file, tiny_model_dir, tmp_path):
    plain = dataset("FilterCountingRLHFDataset", data_file, tiny_model_dir, tmp_path)
    removed = dataset("ImageRemovedDataset", data_file, tiny_model_dir, tmp_path)
    # The large image no longer counts against the budget: the length filter saw the image-free conversation.
    assert [row["extra_info"]["index"] for row in plain.dataframe] == [0]
    assert [row["extra_info"]["index"] for row in removed.dataframe] == [0, 1]
    item = removed[0]
    # No image part: veRL leaves a text-only message's content a plain string.
    assert all(isinstance(message["content"], str) for message in item["raw_prompt"])
    with_image = rendered(plain[0], tiny_model_dir)
    assert VISION_BLOCK.search(with_image)
    # Deleting the vision block from the rendered text gives exactly the image-free rendering.
    assert rendered(item, tiny_model_dir) == VISION_BLOCK.sub("", with_image)
    assert "<image>" not in rendered(item, tiny_model_dir)


def test_harness_prompt_replaces_the_default_system_turn(data_file, tiny_model_dir, tmp_path):
    # The tiny byte-level vocabulary spends a token per character of the system prompt: a larger budget.
    def first(name: str) -> str:
        return rendered(dataset(name, data_file, tiny_model_dir, tmp_path, max_prompt_length=4096)[0], tiny_model_dir)

    plain, harness = first("FilterCountingRLHFDataset"), first("HarnessPromptDataset")
    assert "You are a helpful assistant." in plain
    assert harness == plain.replace("You are a helpful assistant.", HARNESS_SYSTEM_PROMPT)
    assert first("HarnessPromptImageRemovedDataset") == VISION_BLOCK.sub("", harness)


def test_a_row_with_its_own_system_turn_is_refused(data_file, tiny_model_dir, tmp_path):
    harness = dataset("HarnessPromptDataset", data_file, tiny_model_dir, tmp_path, max_prompt_length=4096)
    row = dict(harness.dataframe[0])
    row["prompt"] = [{"role": "system", "content": "Be brief."}, *row["prompt"]]
    with pytest.raises(ValueError, match="already has one"):
        harness._build_messages(row, key="prompt")
