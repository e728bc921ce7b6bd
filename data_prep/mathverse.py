"""MathVerse testmini as veRL RL data: ``python -m data_prep.mathverse --local_save_dir DIR [--local_dataset_path PATH]``.

Dataset ``AI4Math/MathVerse``, config ``testmini``, split ``testmini`` (hub ``main``, targeted 2026-11), 3,940 rows:
788 problems in five versions (Text Dominant, Text Lite, Vision Intensive, Vision Dominant, Vision Only), all kept;
the version is ``extra_info.subset``. The Text Only version is a separate config (``testmini_text_only``) without
images and is not converted. Verified from lmms-eval's ``mathverse`` task and public converters: columns
``sample_index``, ``problem_index``, ``problem_version``, ``question`` (options inline as ``Choices:`` then
``A:…`` lines; empty or nearly so in Vision Only, where the question is in the image), ``image``, ``answer``
(the letter for multiple choice), ``question_type`` (``multi-choice`` / ``free-form``), ``metadata``,
``query_wo``, ``query_cot``, ``question_for_eval``.
"""

from collections.abc import Mapping
from typing import Any

from data_prep.common import MISSING_ANSWER, DatasetSpec, Problem, as_images, inline_choice_problem, main, require_text

# Vision Only rows carry their question (and options) in the image.
QUESTION_IN_IMAGE = "Answer the question shown in the image."


def to_problem(row: Mapping[str, Any]) -> Problem:
    return inline_choice_problem(
        str(row["question"] or "").strip() or QUESTION_IN_IMAGE,
        require_text(row["answer"], MISSING_ANSWER),
        as_images(row["image"]),
        source_id=str(row["sample_index"]),
        subset=str(row["problem_version"]),
        details={
            "problem_index": row.get("problem_index"),
            "question_type": row.get("question_type"),
            "metadata": row.get("metadata"),
        },
    )


SPEC = DatasetSpec(
    name="mathverse",
    hub_id="AI4Math/MathVerse",
    hub_config="testmini",
    splits=("testmini",),
    required_columns=("sample_index", "problem_version", "question", "image", "answer"),
    to_problem=to_problem,
    id_column="sample_index",
)

if __name__ == "__main__":
    main(SPEC)
