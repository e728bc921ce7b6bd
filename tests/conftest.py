"""Session fixtures: the tiny Qwen2.5-VL is built locally once per test session."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# veRL picks its platform once per process: tests run it on the CPU unless told otherwise (e.g. =nvidia on a GPU).
os.environ.setdefault("VERL_PLATFORM", "cpu")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """Path of a tiny random Qwen2.5-VL (tokenizer, processor, model) saved in a temporary folder."""
    from verl_tor.testing.tiny_model import build_tiny_qwen25vl

    return build_tiny_qwen25vl(str(tmp_path_factory.mktemp("tiny_qwen25vl")))


@pytest.fixture(scope="session")
def colour_data_dir(tmp_path_factory) -> str:
    """Folder with train.parquet (32 rows) and val.parquet (8 rows) of the synthetic colour task, images only."""
    from verl_tor.testing.synthetic_data import write_dataset

    out_dir = str(tmp_path_factory.mktemp("colour_data"))
    write_dataset(out_dir, train=32, val=8, seed=0)
    return out_dir


@pytest.fixture(scope="session")
def mixed_colour_data_dir(tmp_path_factory) -> str:
    """Like ``colour_data_dir`` with a quarter text-only and a quarter two-image rows (ToR's mixed batches)."""
    from verl_tor.testing.synthetic_data import write_dataset

    out_dir = str(tmp_path_factory.mktemp("mixed_colour_data"))
    write_dataset(out_dir, train=32, val=8, seed=0, text_only_fraction=0.25, multi_image_fraction=0.25)
    return out_dir
