"""ViRL39K as veRL RL data: ``python -m verl_tor.data_prep.virl39k --local_save_dir DIR [--local_dataset_path PATH]``.

Dataset ``TIGER-Lab/ViRL39K`` (hub ``main``, targeted 2026-11), 38,870 rows, one split (train). The repository is
files, not a ``datasets`` dataset: one parquet table and ``images.zip`` (``load_dataset`` fails on the zip), so
the hub path downloads a snapshot; a local copy is a folder with the parquet file and either ``images.zip`` or the
extracted ``images/`` folder. Verified from the dataset card and public loaders (VL-Rethinker-based training code,
EasyR1 adapters): columns ``question``, ``answer`` (every answer is ``\\boxed{…}``, letters for multiple choice),
``image`` (list of paths relative to the repository, ``images/….jpg``), ``category``, ``source``, ``qid``,
``PassRate_32BTrained``, ``PassRate_7BBase``. Not verified: whether every ``question`` carries ``<image>``
placeholders (public loaders report a few percent without); rows without any get them prepended, rows whose
count disagrees with the images are skipped (``image_placeholder_count_mismatch``). Options, when the question
lists them on ``A. …`` lines, go to ``extra_info.choices``.
"""

from collections.abc import Mapping
from typing import Any

from verl_tor.data_prep.common import (
    MISSING_ANSWER,
    DatasetSpec,
    Problem,
    as_images,
    inline_choice_problem,
    main,
    question_and_answer,
    require_text,
    unbox,
)


def to_problem(row: Mapping[str, Any]) -> Problem:
    question, source_answer = question_and_answer(row, "question", "answer")
    return inline_choice_problem(
        question,
        require_text(unbox(source_answer), MISSING_ANSWER),
        as_images(row["image"]),
        source_answer=source_answer,
        source_id=str(row["qid"]),
        subset=str(row.get("category") or ""),
        details={
            "source": row.get("source"),
            "pass_rate_32b_trained": row.get("PassRate_32BTrained"),
            "pass_rate_7b_base": row.get("PassRate_7BBase"),
        },
    )


SPEC = DatasetSpec(
    name="virl39k",
    hub_id="TIGER-Lab/ViRL39K",
    splits=("train",),
    required_columns=("question", "answer", "image", "qid"),
    to_problem=to_problem,
    id_column="qid",
    hub_snapshot=True,
)

if __name__ == "__main__":
    main(SPEC)
