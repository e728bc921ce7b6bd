"""LogicVista as veRL RL data: ``python -m verl_tor.data_prep.logicvista --local_save_dir DIR [--local_dataset_path PATH]``.

Dataset ``lscpku/LogicVista``, split ``test`` (448 rows; hub ``main``, targeted 2026-11). Verified from public
evaluation code (PAPO, VPPO and veRL-style converters): columns ``question`` (options written in the text),
``answer`` (a letter such as ``C``, or several such as ``A, C``), ``reasoning``, ``image``, ``skill``,
``broad_capability``, ``specific_capability``, ``imagesource``, ``sourcelink``, ``liscenced``, ``id``. Since some
questions have several correct options, every prompt says how to give more than one letter. One question numbers
its options 1-5 and its answer is a number: its prompt asks for the number of the correct option instead, and the
number is its (free-form) ground truth.
"""

from collections.abc import Mapping
from typing import Any

from verl_tor.data_prep.common import DatasetSpec, Problem, as_images, inline_choice_problem, main, question_and_answer

SEVERAL_LETTERS_HINT = "If several options are correct, give all their letters separated by commas, e.g. \\boxed{A, C}."
NUMBERED_OPTIONS_HINT = "The options are numbered: give the number of the correct option, e.g. \\boxed{2}."


def to_problem(row: Mapping[str, Any]) -> Problem:
    question, answer = question_and_answer(row, "question", "answer")
    return inline_choice_problem(
        question,
        answer,
        as_images(row["image"]),
        source_id=str(row.get("id") or ""),
        answer_hint=NUMBERED_OPTIONS_HINT if answer.isdigit() else SEVERAL_LETTERS_HINT,
        subset=str(row.get("skill") or ""),
        details={
            "broad_capability": row.get("broad_capability"),
            "specific_capability": row.get("specific_capability"),
        },
    )


SPEC = DatasetSpec(
    name="logicvista",
    hub_id="lscpku/LogicVista",
    splits=("test",),
    required_columns=("question", "answer", "image"),
    to_problem=to_problem,
    id_column="id",
)

if __name__ == "__main__":
    main(SPEC)
