"""How many rows veRL's ``data.filter_overlong_prompts`` removed, recorded for every run.

veRL 0.9.1's ``RLHFDataset`` drops every prompt longer than ``data.max_prompt_length`` tokens, image tokens
included (a 4,194,304-pixel image alone is ≈ 5,350 tokens), and says so only in a printed line. Dropped training
rows change a run's steps per epoch; dropped benchmark rows change an accuracy's denominator. This subclass keeps
veRL's filter as it is and records what it removed::

    data.custom_cls.path=pkg://verl_tor.launch.prompt_filter
    data.custom_cls.name=FilterCountingRLHFDataset

Each dataset the trainer builds (``train`` from ``data.train_files``, ``validation`` from ``data.val_files``) logs
one line and, when the environment names a run file (``VERL_TOR_RUN_JSON``, which the recipes pass through Ray's
``runtime_env`` because the datasets are built in the TaskRunner, possibly on another node), adds an entry under
``"prompt_filter"`` in that JSON file (the recipes' ``run.json``)::

    {"train": {"files": [...], "max_prompt_length": 2048, "rows_before": 2101, "rows_after": 2090,
               "removed": 11, "removed_by_data_source": {"geo3k": 11}}, "validation": {...}}
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
from verl.utils.dataset.rl_dataset import RLHFDataset

RUN_JSON_ENV = "VERL_TOR_RUN_JSON"
RECORD_KEY = "prompt_filter"

logger = logging.getLogger(__name__)


def _as_list(files: Any) -> list[str]:
    if files is None:
        return []
    return [str(files)] if isinstance(files, str | os.PathLike) else [str(file) for file in files]


def dataset_role(files: Sequence[str], data_config: Mapping[str, Any]) -> str:
    """``train`` or ``validation`` when ``files`` are the config's training or validation files, else ``other``."""
    if list(files) == _as_list(data_config.get("train_files")):
        return "train"
    if list(files) == _as_list(data_config.get("val_files")):
        return "validation"
    return "other"


def filter_record(
    before: datasets.Dataset, after: datasets.Dataset, files: Sequence[str], max_prompt_length: int
) -> dict[str, Any]:
    """What the filter removed, in total and per ``data_source`` (read from the one column, not the images)."""
    removed = Counter(_sources(before))
    removed.subtract(_sources(after))
    return {
        "files": list(files),
        "max_prompt_length": int(max_prompt_length),
        "rows_before": len(before),
        "rows_after": len(after),
        "removed": len(before) - len(after),
        "removed_by_data_source": {source: count for source, count in sorted(removed.items()) if count},
    }


def _sources(rows: datasets.Dataset) -> list[str]:
    if "data_source" not in rows.column_names:
        return ["unknown"] * len(rows)
    return [str(source) for source in rows["data_source"]]


def record_in_run_json(path: Path, role: str, record: Mapping[str, Any]) -> None:
    """Add ``record`` under ``prompt_filter.<role>`` in the JSON file at ``path`` (created with its folder if absent),
    replaced atomically so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = json.loads(path.read_text()) if path.is_file() else {}
    info.setdefault(RECORD_KEY, {})[role] = dict(record)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        json.dump(info, handle, indent=2)
        handle.write("\n")
    os.replace(handle.name, path)


class FilterCountingRLHFDataset(RLHFDataset):
    """veRL's ``RLHFDataset`` that records how many rows its overlong-prompt filter removed."""

    def maybe_filter_out_long_prompts(self, dataframe: datasets.Dataset = None) -> datasets.Dataset:
        kept = super().maybe_filter_out_long_prompts(dataframe)
        if not self.filter_overlong_prompts:
            return kept
        files = _as_list(self.original_data_files)
        role = dataset_role(files, self.config)
        record = filter_record(dataframe, kept, files, self.max_prompt_length)
        logger.warning(
            "filter_overlong_prompts removed %d of %d %s rows longer than %d tokens (by data source: %s)",
            record["removed"],
            record["rows_before"],
            role,
            record["max_prompt_length"],
            record["removed_by_data_source"],
        )
        run_json = os.environ.get(RUN_JSON_ENV)
        if run_json:
            record_in_run_json(Path(run_json), role, record)
        return kept
