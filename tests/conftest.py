"""Session fixtures: the tiny models (Qwen2.5-VL, and each other family on first use) are built locally once per
test session."""

import os
from collections.abc import Mapping

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# veRL picks its platform once per process: tests run it on the CPU unless told otherwise (e.g. =nvidia on a GPU).
os.environ.setdefault("VERL_PLATFORM", "cpu")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "families(*names): run a test parametrized over model families for these families only"
    )


def pytest_collection_modifyitems(config, items):
    """Deselect the family parametrizations a test opts out of with ``@pytest.mark.families(...)``.

    The family is the parameter of a module-scoped fixture (e.g. ``model_dir``), so that one actor per family serves
    all of a module's tests; deselecting (rather than parametrizing each test over its own list) keeps them grouped.
    """
    if not any(item.get_closest_marker("families") for item in items):
        return
    from verl_tor.testing.tiny_model import FAMILIES

    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("families")
        params = getattr(getattr(item, "callspec", None), "params", {})
        chosen = [value for value in params.values() if isinstance(value, str) and value in FAMILIES]
        (dropped if marker and chosen and chosen[0] not in marker.args else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """Path of a tiny random Qwen2.5-VL (tokenizer, processor, model) saved in a temporary folder."""
    from verl_tor.testing.tiny_model import build_tiny_qwen25vl

    return build_tiny_qwen25vl(str(tmp_path_factory.mktemp("tiny_qwen25vl")))


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, tiny_model_dir) -> Mapping[str, str]:
    """Tiny model folders by family (``tiny_model_dirs["qwen3_vl"]``), each built the first time it is asked for."""
    from verl_tor.testing.tiny_model import build_tiny_model

    class TinyModels(dict):
        def __missing__(self, family: str) -> str:
            self[family] = build_tiny_model(str(tmp_path_factory.mktemp(f"tiny_{family}")), family)
            return self[family]

    return TinyModels(qwen2_5_vl=tiny_model_dir)


@pytest.fixture(scope="session")
def processors(tiny_model_dirs) -> Mapping[str, object]:
    """veRL's ``hf_processor`` of each family's tiny model (``processors["qwen3_vl"]``), loaded on first use."""
    from verl.utils import hf_processor

    class Processors(dict):
        def __missing__(self, family: str):
            self[family] = hf_processor(tiny_model_dirs[family])
            return self[family]

    return Processors()


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
