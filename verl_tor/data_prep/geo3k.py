"""Geometry3K as veRL RL data: ``python -m verl_tor.data_prep.geo3k --local_save_dir DIR [--local_dataset_path PATH]``.

Dataset ``hiyouga/geometry3k`` (hub ``main``, targeted 2026-11). Verified against the dataset card's YAML and
veRL's ``examples/data_preprocess/geo3k.py``: splits train (2,101), validation (300), test (601); columns
``images`` (list of one diagram, ``datasets.Image``), ``problem`` (text that already begins with ``<image>``),
``answer`` (the value of the correct choice of the original 4-way question, e.g. ``3\\sqrt{2}``; no letters, no
choices column). Every row is graded free-form.
"""

from collections.abc import Mapping
from typing import Any

from verl_tor.data_prep.common import DatasetSpec, Problem, as_images, main, question_and_answer
from verl_tor.eval.rewards import FREE_FORM


def to_problem(row: Mapping[str, Any]) -> Problem:
    question, answer = question_and_answer(row, "problem", "answer")
    return Problem(question, as_images(row["images"]), answer, FREE_FORM, source_answer=answer)


SPEC = DatasetSpec(
    name="geo3k",
    hub_id="hiyouga/geometry3k",
    splits=("train", "validation", "test"),
    required_columns=("images", "problem", "answer"),
    to_problem=to_problem,
)

if __name__ == "__main__":
    main(SPEC)
