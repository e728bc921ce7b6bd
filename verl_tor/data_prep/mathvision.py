"""MathVision as veRL RL data: ``python -m verl_tor.data_prep.mathvision --local_save_dir DIR [--local_dataset_path PATH]``.

Dataset ``MathLLMs/MathVision`` (hub ``main``, targeted 2026-11): splits test (3,040) and testmini (304, a subset
of test; evaluate one of them, both rows carry ``data_source`` ``mathvision``). Verified from lmms-eval's
``mathvision`` task, the dataset's ``eval.yaml`` and public converters: columns ``id``, ``question`` (refers to the
figure as ``<image1>``, kept as text), ``options`` (list of option texts, empty for free-form problems),
``image`` (relative path), ``decoded_image`` (the ``datasets.Image``), ``answer`` (the option letter when there
are options, else the value), ``solution``, ``level``, ``subject``.
"""

from collections.abc import Mapping
from typing import Any

from verl_tor.data_prep.common import DatasetSpec, Problem, as_images, listed_choice_problem, main, question_and_answer


def to_problem(row: Mapping[str, Any]) -> Problem:
    question, answer = question_and_answer(row, "question", "answer")
    return listed_choice_problem(
        question,
        answer,
        [str(option) for option in row["options"] or []],
        as_images(row["decoded_image"]),
        source_id=str(row["id"]),
        subset=str(row.get("subject") or ""),
        details={"level": row.get("level"), "subject": row.get("subject")},
    )


SPEC = DatasetSpec(
    name="mathvision",
    hub_id="MathLLMs/MathVision",
    splits=("test", "testmini"),
    required_columns=("id", "question", "options", "decoded_image", "answer"),
    to_problem=to_problem,
    id_column="id",
)

if __name__ == "__main__":
    main(SPEC)
