"""DynaMath as veRL RL data: ``python -m verl_tor.data_prep.dynamath --local_save_dir DIR [--local_dataset_path PATH]``.

Dataset ``DynaMath/DynaMath_Sample`` (hub ``main``, targeted 2026-11): ten splits ``sample_variant1`` …
``sample_variant10``, each the same 501 seed questions with regenerated figures and values (DynaMath reports the
average and the worst case over variants; every variant becomes its own ``<split>.parquet``). Verified from public
converters and evaluation scripts: columns ``id``, ``question`` (options inline for multiple choice),
``image`` (path), ``decoded_image`` (``datasets.Image``), ``ground_truth`` (the letter for multiple choice),
``answer_type`` (``multiple choice`` / ``float`` / ``text`` …), ``subject``, ``knowledge_level``. Float answers
are asked with three decimals, as DynaMath's own prompt does.
"""

from collections.abc import Mapping
from typing import Any

from verl_tor.data_prep.common import DatasetSpec, Problem, as_images, inline_choice_problem, main, question_and_answer


def to_problem(row: Mapping[str, Any]) -> Problem:
    question, answer = question_and_answer(row, "question", "ground_truth")
    return inline_choice_problem(
        question,
        answer,
        as_images(row["decoded_image"]),
        source_id=str(row["id"]),
        answer_hint="Give the answer as a decimal number with three decimal places."
        if row["answer_type"] == "float"
        else "",
        subset=str(row.get("subject") or ""),
        details={"answer_type": row["answer_type"], "knowledge_level": row.get("knowledge_level")},
    )


SPEC = DatasetSpec(
    name="dynamath",
    hub_id="DynaMath/DynaMath_Sample",
    splits=tuple(f"sample_variant{variant}" for variant in range(1, 11)),
    required_columns=("id", "question", "decoded_image", "ground_truth", "answer_type"),
    to_problem=to_problem,
    id_column="id",
)

if __name__ == "__main__":
    main(SPEC)
