"""MathVista testmini as veRL RL data: ``python -m verl_tor.data_prep.mathvista --local_save_dir DIR [--local_dataset_path PATH]``.

Dataset ``AI4Math/MathVista``, split ``testmini`` (1,000 rows; hub ``main``, targeted 2026-11; the 5,141-row test
split has no public answers and is not converted). Verified from lmms-eval's ``mathvista`` task and MathVista's own
``calculate_score.py``: columns ``pid``, ``question``, ``image`` (relative path), ``decoded_image``
(``datasets.Image``), ``choices`` (list of option texts, None for free-form), ``unit``, ``precision``,
``answer`` (for multiple choice the *text* of the correct choice, converted here to its letter), ``question_type``
(``multi_choice`` / ``free_form``), ``answer_type`` (``text`` / ``integer`` / ``float`` / ``list``), ``metadata``
(``category``, ``task``, ``context``, ``grade``, ``skills``, ``source``, ...), ``query`` (MathVista's own prompt,
not used). Free-form prompts state the integer/decimal/list form MathVista expects.
"""

from collections.abc import Mapping
from typing import Any

from verl_tor.data_prep.common import DatasetSpec, Problem, as_images, listed_choice_problem, main, question_and_answer


def answer_form(row: Mapping[str, Any]) -> str:
    """What a free-form answer must look like, as MathVista's own prompt says it."""
    if row["choices"]:
        return ""
    if row["answer_type"] == "integer":
        return "The answer is an integer."
    if row["answer_type"] == "float" and row.get("precision") is not None:
        return f"Give the answer as a decimal number with {int(row['precision'])} decimal place(s)."
    if row["answer_type"] == "list":
        return "The answer is a Python list, e.g. [1, 2, 3]."
    return ""


def to_problem(row: Mapping[str, Any]) -> Problem:
    question, answer = question_and_answer(row, "question", "answer")
    metadata = row.get("metadata") or {}
    return listed_choice_problem(
        question,
        answer,
        [str(choice) for choice in row["choices"] or []],
        as_images(row["decoded_image"]),
        source_id=str(row["pid"]),
        answer_hint=answer_form(row),
        subset=str(metadata.get("category") or ""),
        details={
            "question_type": row.get("question_type"),
            "answer_type": row.get("answer_type"),
            "unit": row.get("unit"),
            "precision": row.get("precision"),
            "metadata": metadata,
        },
    )


SPEC = DatasetSpec(
    name="mathvista",
    hub_id="AI4Math/MathVista",
    splits=("testmini",),
    required_columns=("pid", "question", "decoded_image", "choices", "answer", "answer_type"),
    to_problem=to_problem,
    id_column="pid",
)

if __name__ == "__main__":
    main(SPEC)
