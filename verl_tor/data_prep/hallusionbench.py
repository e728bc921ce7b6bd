"""HallusionBench as veRL RL data: ``python -m verl_tor.data_prep.hallusionbench --local_save_dir DIR [--local_dataset_path PATH]``.

Dataset ``lmms-lab/HallusionBench``, split ``image`` (951 yes/no questions with a figure; hub ``main``, targeted
2026-11). The ``non_image`` split (questions asked without a figure) is not converted: it has no image, and the
usual evaluation (lmms-eval ``hallusion_bench_image``, VLMEvalKit) uses the image split only. Verified from
lmms-eval's ``hallusion_bench`` task: columns ``category`` (``VD`` visual dependent / ``VS`` visual supplement,
kept as ``extra_info.subset``), ``subcategory``, ``visual_input``, ``set_id``, ``figure_id``, ``sample_note``,
``question_id``, ``question``, ``gt_answer_details``, ``gt_answer`` (``"1"`` yes, ``"0"`` no), ``filename``,
``image``. ``extra_info.id`` is ``category_subcategory_setid_figureid_questionid``, the key of HallusionBench's
question- and figure-level accuracies.
"""

from collections.abc import Mapping
from typing import Any

from verl_tor.data_prep.common import (
    MISSING_ANSWER,
    DatasetSpec,
    Problem,
    SkipRow,
    as_images,
    main,
    question_and_answer,
)
from verl_tor.eval.rewards import YES_NO

YES_NO_BY_LABEL = {"1": "yes", "0": "no"}


def to_problem(row: Mapping[str, Any]) -> Problem:
    question, label = question_and_answer(row, "question", "gt_answer")
    if label not in YES_NO_BY_LABEL:
        raise SkipRow(MISSING_ANSWER, f"gt_answer {label!r} is neither '1' (yes) nor '0' (no)")
    key_parts = [row.get(column) for column in ("category", "subcategory", "set_id", "figure_id", "question_id")]
    return Problem(
        question,
        as_images(row["image"]),
        YES_NO_BY_LABEL[label],
        YES_NO,
        source_answer=label,
        source_id="_".join(str(part) for part in key_parts),
        subset=str(row["category"]),
        details={
            "subcategory": row.get("subcategory"),
            "visual_input": row.get("visual_input"),
            "gt_answer_details": row.get("gt_answer_details"),
            "filename": row.get("filename"),
        },
    )


SPEC = DatasetSpec(
    name="hallusionbench",
    hub_id="lmms-lab/HallusionBench",
    splits=("image",),
    required_columns=("category", "question", "gt_answer", "image"),
    to_problem=to_problem,
    ability="hallucination",
)

if __name__ == "__main__":
    main(SPEC)
