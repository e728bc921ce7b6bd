"""MMK12 as veRL RL data: ``python -m verl_tor.data_prep.mmk12 --local_save_dir DIR [--local_dataset_path PATH]``.

Dataset ``FanqingM/MMK12`` (MM-Eureka; hub ``main``, targeted 2026-11; a public pipeline pins commit
``372a609268ea79b5e78d90ab173e02c37b486163``). Verified from public loaders (lmms-eval's ``mmk12`` task, EasyR1 and
veRL adapters): splits train (15,616, K-12 math with free-form answers) and test (2,000 multiple-choice questions,
500 each of math, physics, chemistry, biology, options written in the question on ``A. …`` lines, ``answer`` the
letter); columns ``id``, ``subject``, ``image`` (one ``datasets.Image``), ``question``, ``answer``. A letter answer
is graded as multiple choice (options parsed from the question when they are on their own lines), anything else
free-form.
"""

from collections.abc import Mapping
from typing import Any

from verl_tor.data_prep.common import DatasetSpec, Problem, as_images, inline_choice_problem, main, question_and_answer


def to_problem(row: Mapping[str, Any]) -> Problem:
    question, answer = question_and_answer(row, "question", "answer")
    return inline_choice_problem(
        question,
        answer,
        as_images(row["image"]),
        source_id=str(row["id"]),
        subset=str(row.get("subject") or ""),
    )


SPEC = DatasetSpec(
    name="mmk12",
    hub_id="FanqingM/MMK12",
    splits=("train", "test"),
    required_columns=("id", "image", "question", "answer"),
    to_problem=to_problem,
    id_column="id",
)

if __name__ == "__main__":
    main(SPEC)
