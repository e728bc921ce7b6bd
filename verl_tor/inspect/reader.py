"""Find and read a run's ``tor_inspect.jsonl`` (format: :mod:`verl_tor.inspect`), also while the run writes it."""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

from verl_tor.inspect import INSPECT_FILE

# trainer.default_local_dir is the recorder's default folder; a run dir given by hand may be one level above it.
SEARCH_SUBDIRS = ("", "checkpoints")

Record = dict[str, Any]


def find_inspect_file(run_dir: str) -> str | None:
    """Path of ``tor_inspect.jsonl`` in ``run_dir`` or ``run_dir/checkpoints``, or ``None`` when the run has none."""
    for subdir in SEARCH_SUBDIRS:
        path = os.path.join(run_dir, subdir, INSPECT_FILE)
        if os.path.isfile(path):
            return path
    return None


def read_records(path: str) -> tuple[list[Record], list[Record]]:
    """``(runs, steps)``: the file's ``run`` headers in file order and its ``step`` records ordered by step.

    Each step record gets ``run_index``, the position in ``runs`` of the last header before it (``None`` if it
    has none). A step recorded twice (a resumed run redoes the steps after its last checkpoint) keeps the later
    record, the one the resumed training continued from. A last line cut short (the run is writing it) is
    skipped; a broken line before it (a run killed mid-write, then resumed) is skipped with a warning. Records of other kinds are ignored, so that newer writers stay readable.
    """
    runs: list[Record] = []
    steps: dict[int, Record] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if line.endswith("\n"):
                    warnings.warn(f"{path}:{number}: not a JSON record, skipped", stacklevel=2)
                continue
            if record.get("kind") == "run":
                runs.append(record)
            elif record.get("kind") == "step":
                steps[record["step"]] = {**record, "run_index": len(runs) - 1 if runs else None}
    return runs, [steps[step] for step in sorted(steps)]
