"""``verl_tor.launch.prompt_filter``: veRL's own overlong-prompt filter, selected through ``data.custom_cls`` as the recipes
select it, keeps exactly the rows plain ``RLHFDataset`` keeps, and the count it records is the number of rows built
here to be too long (large images), per data source."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from verl_tor.launch.prompt_filter import RUN_JSON_ENV, dataset_role
from verl_tor.testing.synthetic_data import QUESTION, colour_image_png

MAX_PROMPT_LENGTH = 128
# 56 x 56 pixels are 4 image tokens; 448 x 448 are 256, over the 128-token budget with or without the text.
SMALL, LARGE = 56, 448
# (data_source, image side) of each row, written in this order.
TRAIN_ROWS = [("a", SMALL), ("a", LARGE), ("b", SMALL), ("a", LARGE), ("b", LARGE), ("b", SMALL), ("a", SMALL)]
VAL_ROWS = [("a", SMALL), ("b", LARGE), ("b", SMALL)]


def write_rows(path, rows) -> str:
    rng = np.random.default_rng(0)
    records = [
        {
            "data_source": source,
            "prompt": [{"role": "user", "content": "<image>" + QUESTION}],
            "images": [{"bytes": colour_image_png("red", rng, size=side)}],
            "ability": "perception",
            "reward_model": {"style": "rule", "ground_truth": "red"},
            "extra_info": {"index": index},
        }
        for index, (source, side) in enumerate(rows)
    ]
    pd.DataFrame(records).to_parquet(path)
    return str(path)


def expected_removed(rows) -> dict[str, int]:
    removed: dict[str, int] = {}
    for source, side in rows:
        if side == LARGE:
            removed[source] = removed.get(source, 0) + 1
    return removed


@pytest.fixture()
def data_config(tmp_path):
    from verl_tor.testing.actor_engine import compose_ppo_config

    train = write_rows(tmp_path / "train.parquet", TRAIN_ROWS)
    val = write_rows(tmp_path / "val.parquet", VAL_ROWS)
    overrides = [
        f"data.train_files={train}",
        f"data.val_files=[{val}]",
        f"data.max_prompt_length={MAX_PROMPT_LENGTH}",
        "data.filter_overlong_prompts=true",
        # None: filter in this process (`datasets` forks a pool even for one worker).
        "data.filter_overlong_prompts_workers=null",
        f"+data.cache_dir={tmp_path / 'cache'}",
        # The tiny processor's own max_pixels would shrink the large images; the recipes set these too.
        "+data.mm_processor_kwargs.min_pixels=3136",
        "+data.mm_processor_kwargs.max_pixels=262144",
        # As the recipes select it (recipes/common.sh, run_overrides).
        "data.custom_cls.path=pkg://verl_tor.launch.prompt_filter",
        "data.custom_cls.name=FilterCountingRLHFDataset",
    ]
    return compose_ppo_config(overrides).data


def build(config, files, tiny_model_dir, plain: bool = False):
    from verl.trainer.ppo.utils import create_rl_dataset
    from verl.utils import hf_processor, hf_tokenizer

    if plain:
        config = config.copy()
        config.custom_cls.path = None
    return create_rl_dataset(files, config, hf_tokenizer(tiny_model_dir), hf_processor(tiny_model_dir))


def test_removed_rows_are_counted_per_data_source_in_run_json(data_config, tiny_model_dir, tmp_path, monkeypatch):
    run_json = tmp_path / "run" / "run.json"
    run_json.parent.mkdir()
    run_json.write_text(json.dumps({"label": "GRPO", "kind": "train"}))
    monkeypatch.setenv(RUN_JSON_ENV, str(run_json))

    train = build(data_config, data_config.train_files, tiny_model_dir)
    val = build(data_config, data_config.val_files, tiny_model_dir)
    assert type(train).__name__ == "FilterCountingRLHFDataset"

    # The same rows as veRL's own class keeps: the subclass only counts.
    plain = build(data_config, data_config.train_files, tiny_model_dir, plain=True)
    assert type(plain).__name__ == "RLHFDataset"
    assert len(train) == len(plain) == sum(side == SMALL for _, side in TRAIN_ROWS)
    assert [row["extra_info"]["index"] for row in train.dataframe] == [
        index for index, (_, side) in enumerate(TRAIN_ROWS) if side == SMALL
    ]

    info = json.loads(run_json.read_text())
    assert (info["label"], info["kind"]) == ("GRPO", "train"), "the run's own entries stay"
    record = info["prompt_filter"]
    assert record["train"]["removed_by_data_source"] == expected_removed(TRAIN_ROWS) == {"a": 2, "b": 1}
    assert (record["train"]["rows_before"], record["train"]["rows_after"], record["train"]["removed"]) == (7, 4, 3)
    assert record["train"]["max_prompt_length"] == MAX_PROMPT_LENGTH
    assert record["validation"]["removed_by_data_source"] == expected_removed(VAL_ROWS) == {"b": 1}
    assert (record["validation"]["rows_before"], len(val)) == (3, 2)


def test_run_json_and_its_folder_are_created_where_the_dataset_is_built(
    data_config, tiny_model_dir, tmp_path, monkeypatch
):
    """On another node than the launching shell, the run folder may not exist yet: it is created there."""
    run_json = tmp_path / "elsewhere" / "run" / "run.json"
    monkeypatch.setenv(RUN_JSON_ENV, str(run_json))
    build(data_config, data_config.val_files, tiny_model_dir)
    assert json.loads(run_json.read_text())["prompt_filter"]["validation"]["removed"] == 1


def test_roles_follow_the_config_files():
    config = {"train_files": "/d/train.parquet", "val_files": ["/d/a.parquet", "/d/b.parquet"]}
    assert dataset_role(["/d/train.parquet"], config) == "train"
    assert dataset_role(["/d/a.parquet", "/d/b.parquet"], config) == "validation"
    assert dataset_role(["/d/a.parquet"], config) == "other"
