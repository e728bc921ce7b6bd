"""We-Math testmini as veRL RL data: ``python -m verl_tor.data_prep.wemath --local_save_dir DIR [--local_dataset_path PATH]``.

Dataset ``We-Math/We-Math``, split ``testmini`` (1,740 rows, all multiple choice; hub ``main``, targeted 2026-11).
Verified from public loaders (VLMEvalKit-style converters, PAPO/VPPO evaluation code): columns ``ID``,
``question``, ``option`` (one string, ``A. …; B. …; …``), ``answer`` (the letter), ``key`` (the problem's step
label used by We-Math's four-dimensional metric, kept as ``extra_info.subset``), ``image_path`` (the
``datasets.Image``, despite its name), plus knowledge-concept columns kept in ``extra_info.details`` when present.
Not verified: the exact knowledge-concept column names (read as ``knowledge concept`` / ``knowledge_concept``).
When ``option`` cannot be split into ``A.``/``B.``… parts it is appended to the question verbatim.
"""

from collections.abc import Mapping
from typing import Any

from verl_tor.data_prep.common import (
    DatasetSpec,
    Problem,
    as_images,
    inline_choice_problem,
    listed_choice_problem,
    main,
    parse_choices,
    question_and_answer,
)


def to_problem(row: Mapping[str, Any]) -> Problem:
    question, answer = question_and_answer(row, "question", "answer")
    option_text = str(row["option"] or "").strip()
    fields = {
        "source_id": str(row["ID"]),
        "subset": str(row.get("key") or ""),
        "details": {
            "key": row.get("key"),
            "knowledge_concept": row.get("knowledge concept", row.get("knowledge_concept")),
        },
    }
    images = as_images(row["image_path"])
    choices = parse_choices(option_text, separator=";")
    if choices:
        return listed_choice_problem(question, answer, choices, images, **fields)
    return inline_choice_problem(f"{question}\n{option_text}".strip(), answer, images, **fields)


SPEC = DatasetSpec(
    name="wemath",
    hub_id="We-Math/We-Math",
    splits=("testmini",),
    required_columns=("ID", "question", "option", "answer", "image_path"),
    to_problem=to_problem,
    id_column="ID",
)

if __name__ == "__main__":
    main(SPEC)
