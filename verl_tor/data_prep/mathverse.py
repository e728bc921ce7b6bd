"""MathVerse testmini as veRL RL data: ``python -m verl_tor.data_prep.mathverse --local_save_dir DIR [--local_dataset_path PATH]``.

Dataset ``AI4Math/MathVerse``, config ``testmini``, split ``testmini`` (hub ``main``, targeted 2026-11), 3,940 rows:
788 problems in five versions (Text Dominant, Text Lite, Vision Intensive, Vision Dominant, Vision Only), all kept;
the version is ``extra_info.subset``. The Text Only version is a separate config (``testmini_text_only``) without
images and is not converted. Verified from lmms-eval's ``mathverse`` task and public converters: columns
``sample_index``, ``problem_index``, ``problem_version``, ``question`` (options inline as ``Choices:`` then
``A:…`` lines; empty or nearly so in Vision Only, where the question is in the image), ``image``, ``answer``
(the letter for multiple choice), ``question_type`` (``multi-choice`` / ``free-form``), ``metadata``,
``query_wo``, ``query_cot``, ``question_for_eval``.

A few multiple-choice problems (about six, so about 30 rows over the five versions) write their answer otherwise:
two letters on two lines (``C\\nD``: both options are correct, ground truth ``C,D``), or the text of the correct
option (``053 ^\\circ T``, ``False``) instead of its letter. Such a text is mapped to its option's letter, looking
the options up in the row's own question or, when the row does not list them (Vision Only, where the options are
in the image), in another version of the same problem (``problem_index``). A text answer that matches no known
option stays free-form, graded against the text. Every multiple-choice row carries its problem's options in
``extra_info.choices`` (so that a response naming the option's text is graded too), also when its own question does
not list them.
"""

from collections.abc import Mapping
from typing import Any

import datasets

from verl_tor.data_prep.common import (
    MISSING_ANSWER,
    DatasetSpec,
    Problem,
    SkipRow,
    as_images,
    choice_letter,
    inline_choice_problem,
    main,
    option_letters,
    parse_choices,
    require_text,
)
from verl_tor.eval.rewards import MULTIPLE_CHOICE

# Vision Only rows carry their question (and options) in the image.
QUESTION_IN_IMAGE = "Answer the question shown in the image."
MULTI_CHOICE = "multi-choice"
# Column added by `problem_options`: the option texts of the row's problem, from whichever version lists them.
PROBLEM_OPTIONS = "problem_options"


def problem_options(rows: datasets.Dataset) -> datasets.Dataset:
    """The split with ``PROBLEM_OPTIONS``: per row, the options any version of its problem lists (A first)."""
    options: dict[str, list[str]] = {}
    for problem, question in zip(rows["problem_index"], rows["question"], strict=True):
        parsed = parse_choices(str(question or ""))
        if parsed and len(parsed) > len(options.get(str(problem), [])):
            options[str(problem)] = parsed
    return rows.add_column(PROBLEM_OPTIONS, [options.get(str(problem), []) for problem in rows["problem_index"]])


def to_problem(row: Mapping[str, Any]) -> Problem:
    question = str(row["question"] or "").strip() or QUESTION_IN_IMAGE
    answer = require_text(row["answer"], MISSING_ANSWER)
    fields = {
        "source_id": str(row["sample_index"]),
        "subset": str(row["problem_version"]),
        "details": {
            "problem_index": row.get("problem_index"),
            "question_type": row.get("question_type"),
            "metadata": row.get("metadata"),
        },
    }
    images = as_images(row["image"])
    if row.get("question_type") != MULTI_CHOICE:
        return inline_choice_problem(question, answer, images, **fields)
    choices = parse_choices(question) or list(row.get(PROBLEM_OPTIONS) or [])
    letters = option_letters(answer)
    if letters is None:  # the answer is written as an option's text
        try:
            letters = choice_letter(answer, choices)
        except SkipRow:
            return inline_choice_problem(question, answer, images, **fields)
    return Problem(question, images, letters, MULTIPLE_CHOICE, source_answer=answer, choices=choices, **fields)


SPEC = DatasetSpec(
    name="mathverse",
    hub_id="AI4Math/MathVerse",
    hub_config="testmini",
    splits=("testmini",),
    required_columns=("sample_index", "problem_index", "problem_version", "question", "image", "answer"),
    to_problem=to_problem,
    id_column="sample_index",
    prepare=problem_options,
)

if __name__ == "__main__":
    main(SPEC)
