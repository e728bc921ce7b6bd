"""Each converter on a few rows in its dataset's real schema (built here, images drawn here), then veRL's loader.

Every fixture holds good rows and malformed ones; the expectations below are written by hand from the fixture:
ground truths, answer types, choices, image counts and which rows are skipped for which reason.
"""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Features, List, Value
from PIL import Image, ImageDraw

from verl_tor.data_prep import (
    dynamath,
    geo3k,
    hallusionbench,
    logicvista,
    mathverse,
    mathvision,
    mathvista,
    mmk12,
    virl39k,
    wemath,
)
from verl_tor.data_prep.common import (
    ANSWER_NOT_IN_CHOICES,
    IMAGE_NOT_FOUND,
    MANIFEST_NAME,
    MISSING_ANSWER,
    MISSING_QUESTION,
    NO_IMAGE,
    PLACEHOLDER_MISMATCH,
    UNREADABLE_IMAGE,
    DataPrepError,
    ImageStore,
    SkipRow,
    choice_letter,
    convert_dataset,
    image_bytes,
    option_letters,
    parse_choices,
    sha256_of,
    unbox,
)
from verl_tor.data_prep.common import main as converter_main
from verl_tor.eval.benchmarks import BENCHMARKS, DATA_SOURCES

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE = datasets.Image()
MC, YN, FF = "multiple_choice", "yes_no", "free_form"
MC_MV = "multi-choice"  # MathVerse's question_type


def drawn(seed: int) -> Image.Image:
    image = Image.new("RGB", (64, 48), (40 * seed % 256, 90, 200))
    ImageDraw.Draw(image).ellipse((8, 8, 40, 40), fill=(255, 255 - 30 * seed % 256, 0))
    return image


def encoded(seed: int, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    drawn(seed).save(buffer, format=fmt)
    return buffer.getvalue()


def image_value(seed: int) -> dict:
    return {"bytes": encoded(seed), "path": None}


def hf_dataset(rows: list[dict], features: dict) -> datasets.Dataset:
    return datasets.Dataset.from_list(rows, features=Features(features))


# ------------------------------------------------------------------------------------- fixtures in the real schemas
# Each builder writes a local copy under `root` and returns (path, extra CLI args, expected rows, expected skips).
# Expected rows per split: (ground_truth, answer_type, image count, choices).


def build_geo3k(root: Path):
    features = {"images": List(IMAGE), "problem": Value("string"), "answer": Value("string")}
    splits = {
        "train": [
            {
                "images": [image_value(1)],
                "problem": "<image>Find x. Round to the nearest tenth.",
                "answer": "3\\sqrt{2}",
            },
            {"images": [], "problem": "<image>Find y.", "answer": "4"},
            {"images": [image_value(2)], "problem": "<image>Find the area.", "answer": "45"},
        ],
        "validation": [{"images": [image_value(3)], "problem": "<image>Find m \\angle 2.", "answer": "17"}],
        "test": [{"images": [image_value(4)], "problem": "<image>Find z.", "answer": ""}],
    }
    path = root / "geometry3k"
    datasets.DatasetDict({name: hf_dataset(rows, features) for name, rows in splits.items()}).save_to_disk(path)
    expected = {
        "train": [("3\\sqrt{2}", FF, 1, []), ("45", FF, 1, [])],
        "validation": [("17", FF, 1, [])],
        "test": [],
    }
    return path, ["--splits", "train", "validation"], expected, {"train": {NO_IMAGE: 1}, "validation": {}}


def build_virl39k(root: Path):
    path = root / "ViRL39K"
    path.mkdir()
    with zipfile.ZipFile(path / "images.zip", "w") as archive:
        for seed in range(4):
            archive.writestr(f"images/Processed-{seed}-0.jpg", encoded(seed, "JPEG"))
    rows = [
        ("<image>What is the angle ABC?", "\\boxed{17^\\circ}", ["images/Processed-0-0.jpg"], "q0"),
        ("How many red shapes?\nA. 1\nB. 2\nC. 3", "\\boxed{B}", ["images/Processed-1-0.jpg"], "q1"),
        ("<image> and <image>: which is larger?", "\\boxed{\\frac{1}{2}}", ["images/Processed-2-0.jpg"] * 2, "q2"),
        ("<image>Missing file.", "\\boxed{3}", ["images/Processed-9-0.jpg"], "q3"),
        ("<image>Unbalanced answer.", "\\boxed{\\left\\{x\\right.", ["images/Processed-3-0.jpg"], "q4"),
        (
            "Which of the two plots grows faster?",
            "\\boxed{2}",
            ["images/Processed-3-0.jpg", "images/Processed-0-0.jpg"],
            "q5",
        ),
    ]
    table = pa.table(
        {
            "question": [row[0] for row in rows],
            "answer": [row[1] for row in rows],
            "PassRate_32BTrained": [0.5] * len(rows),
            "PassRate_7BBase": [-1.0] * len(rows),
            "category": ["Spatial Reasoning"] * len(rows),
            "source": ["fixture"] * len(rows),
            "qid": [row[3] for row in rows],
            "image": [row[2] for row in rows],
        }
    )
    pq.write_table(table, path / "39Kv1.parquet")
    expected = {
        "train": [
            ("17^\\circ", FF, 1, []),
            ("B", MC, 1, ["1", "2", "3"]),
            ("\\frac{1}{2}", FF, 2, []),
            ("2", FF, 2, []),  # no placeholders in the question: one per image is prepended
        ]
    }
    return path, [], expected, {"train": {IMAGE_NOT_FOUND: 1, MISSING_ANSWER: 1}}


def build_mmk12(root: Path):
    features = {"id": Value("string"), "subject": Value("string"), "image": IMAGE, "question": Value("string")}
    features["answer"] = Value("string")
    train = [
        {"id": "t0", "subject": "math", "image": image_value(0), "question": "Find AB.", "answer": "2\\sqrt{3}"},
        {"id": "t1", "subject": "math", "image": None, "question": "Find CD.", "answer": "5"},
    ]
    test = [
        {
            "id": "m0",
            "subject": "physics",
            "image": image_value(1),
            "question": "Which circuit lights the bulb?\nA. circuit one\nB. circuit two\nC. both\nD. neither",
            "answer": "B",
        }
    ]
    path = root / "MMK12"
    (path / "data").mkdir(parents=True)
    hf_dataset(train, features).to_parquet(path / "data" / "train-00000-of-00001.parquet")
    hf_dataset(test, features).to_parquet(path / "data" / "test-00000-of-00001.parquet")
    expected = {
        "train": [("2\\sqrt{3}", FF, 1, [])],
        "test": [("B", MC, 1, ["circuit one", "circuit two", "both", "neither"])],
    }
    return path, [], expected, {"train": {NO_IMAGE: 1}, "test": {}}


def build_mathverse(root: Path):
    metadata = {"split": Value("string"), "source": Value("string"), "subject": Value("string")}
    features = {
        "sample_index": Value("string"),
        "problem_index": Value("string"),
        "problem_version": Value("string"),
        "question": Value("string"),
        "image": IMAGE,
        "answer": Value("string"),
        "question_type": Value("string"),
        "metadata": metadata,
        "query_wo": Value("string"),
        "query_cot": Value("string"),
        "question_for_eval": Value("string"),
    }

    def row(index, version, question, image, answer, question_type, problem=None):
        return {
            "sample_index": str(index),
            "problem_index": str(problem or index),
            "problem_version": version,
            "question": question,
            "image": image,
            "answer": answer,
            "question_type": question_type,
            "metadata": {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry"},
            "query_wo": "Please directly answer the question.",
            "query_cot": "Please first conduct reasoning.",
            "question_for_eval": question,
        }

    rows = [
        row(
            1,
            "Text Dominant",
            "Find angle C.\nChoices:\nA:55°\nB:35°\nC:30°\nD:45°",
            image_value(0),
            "B",
            "multi-choice",
        ),
        row(2, "Vision Intensive", "Find the length of AB.", image_value(1), "14", "free-form"),
        row(3, "Vision Only", "", image_value(2), "C", "multi-choice"),
        row(4, "Vision Dominant", "Find x.", {"bytes": b"not an image", "path": None}, "5", "free-form"),
        # The shapes of the few real testmini answers that are not one letter (values made up here): two
        # letters on two lines; the option's text, in a version that lists the options and in Vision Only, which
        # does not (its options are looked up in the problem's other versions); a text that is no option.
        row(5, "Text Dominant", "Which are right?\nChoices:\nA:1\nB:2\nC:3\nD:4", image_value(3), "C\nD", MC_MV, 50),
        row(6, "Vision Only", "", image_value(4), "C\nD", "multi-choice", 50),
        row(
            7,
            "Text Lite",
            "Bearing of T?\nChoices:\nA:053^{\\circ} T\nB:127° T",
            image_value(5),
            "053 ^\\circ T",
            MC_MV,
            60,
        ),
        row(8, "Vision Only", "", image_value(6), "053 ^\\circ T", MC_MV, 60),
        row(9, "Text Dominant", "Is it so?\nChoices:\nA:True\nB:False", image_value(7), "False", MC_MV, 70),
        row(10, "Vision Only", "", image_value(8), "Neither", MC_MV, 80),
    ]
    path = root / "MathVerse"
    datasets.DatasetDict({"testmini": hf_dataset(rows, features)}).save_to_disk(path)
    bearings = ["053^{\\circ} T", "127° T"]
    expected = {
        "testmini": [
            ("B", MC, 1, ["55°", "35°", "30°", "45°"]),
            ("14", FF, 1, []),
            ("C", MC, 1, []),
            ("C,D", MC, 1, ["1", "2", "3", "4"]),
            ("C,D", MC, 1, ["1", "2", "3", "4"]),
            ("A", MC, 1, bearings),
            ("A", MC, 1, bearings),
            ("B", MC, 1, ["True", "False"]),
            ("Neither", FF, 1, []),
        ],
    }
    return path, [], expected, {"testmini": {UNREADABLE_IMAGE: 1}}


def build_mathvision(root: Path):
    features = {
        "id": Value("string"),
        "question": Value("string"),
        "options": List(Value("string")),
        "image": Value("string"),
        "decoded_image": IMAGE,
        "answer": Value("string"),
        "solution": Value("string"),
        "level": Value("int64"),
        "subject": Value("string"),
    }

    def row(identifier, question, options, answer, seed):
        return {
            "id": identifier,
            "question": question,
            "options": options,
            "image": f"images/{identifier}.jpg",
            "decoded_image": image_value(seed),
            "answer": answer,
            "solution": "",
            "level": 2,
            "subject": "metric geometry - angle",
        }

    test = [
        row("1", "<image1>\nWhich number is hidden?", ["1", "2", "3", "4", "5"], "C", 0),
        row("2", "How many squares are there? <image1>", [], "7", 1),
        row("3", "<image1>\nWhich one?", ["a", "b", "c", "d", "e"], "F", 2),
    ]
    testmini = [row("4", "<image1>\nWhat is the area?", [], "12", 3)]
    path = root / "MathVision"
    (path / "data").mkdir(parents=True)
    hf_dataset(test, features).to_parquet(path / "data" / "test-00000-of-00001.parquet")
    hf_dataset(testmini, features).to_parquet(path / "data" / "testmini-00000-of-00001.parquet")
    expected = {"test": [("C", MC, 1, ["1", "2", "3", "4", "5"]), ("7", FF, 1, [])], "testmini": [("12", FF, 1, [])]}
    return path, [], expected, {"test": {ANSWER_NOT_IN_CHOICES: 1}, "testmini": {}}


def build_mathvista(root: Path):
    metadata = {"category": Value("string"), "task": Value("string"), "skills": List(Value("string"))}
    features = {
        "pid": Value("string"),
        "question": Value("string"),
        "image": Value("string"),
        "decoded_image": IMAGE,
        "choices": List(Value("string")),
        "unit": Value("string"),
        "precision": Value("float64"),
        "answer": Value("string"),
        "question_type": Value("string"),
        "answer_type": Value("string"),
        "metadata": metadata,
        "query": Value("string"),
    }

    def row(pid, question, choices, answer, question_type, answer_type, precision=None):
        return {
            "pid": pid,
            "question": question,
            "image": f"images/{pid}.jpg",
            "decoded_image": image_value(int(pid)),
            "choices": choices,
            "unit": None,
            "precision": precision,
            "answer": answer,
            "question_type": question_type,
            "answer_type": answer_type,
            "metadata": {"category": "math-targeted-vqa", "task": "geometry problem solving", "skills": ["algebra"]},
            "query": "Hint: ...",
        }

    rows = [
        row("1", "Find angle ABC.", ["145°", "35°", "55°"], "35°", "multi_choice", "text"),
        row("2", "What is the ratio?", None, "1.2", "free_form", "float", 1.0),
        row("3", "How many cubes?", None, "3", "free_form", "integer"),
        row("4", "What is the value?", None, None, "free_form", "integer"),
    ]
    path = root / "MathVista"
    hf_dataset(rows, features).save_to_disk(path)
    expected = {"testmini": [("B", MC, 1, ["145°", "35°", "55°"]), ("1.2", FF, 1, []), ("3", FF, 1, [])]}
    return path, [], expected, {"testmini": {MISSING_ANSWER: 1}}


def build_wemath(root: Path):
    features = {
        "ID": Value("string"),
        "split": Value("string"),
        "knowledge concept": Value("string"),
        "question": Value("string"),
        "option": Value("string"),
        "answer": Value("string"),
        "key": Value("string"),
        "image_path": IMAGE,
    }

    def row(identifier, option, answer, image):
        return {
            "ID": identifier,
            "split": "testmini",
            "knowledge concept": "Area of Rectangles",
            "question": "What is the area of the rectangle?",
            "option": option,
            "answer": answer,
            "key": "2steps_1",
            "image_path": image,
        }

    rows = [
        row("1-1", "A. 3; B. 4; C. 5; D. 6; E. No correct answer", "B", image_value(0)),
        row("1-2", "either 12 or 24", "A", image_value(1)),
        row("1-3", "A. 3; B. 4", "A", None),
    ]
    path = root / "WeMath"
    path.mkdir()
    hf_dataset(rows, features).to_parquet(path / "testmini.parquet")
    expected = {"testmini": [("B", MC, 1, ["3", "4", "5", "6", "No correct answer"]), ("A", MC, 1, [])]}
    return path, [], expected, {"testmini": {NO_IMAGE: 1}}


def build_hallusionbench(root: Path):
    names = ["category", "subcategory", "visual_input", "set_id", "figure_id", "sample_note", "question_id"]
    features = {name: Value("string") for name in names}
    features |= {
        "question": Value("string"),
        "gt_answer_details": Value("string"),
        "gt_answer": Value("string"),
        "filename": Value("string"),
        "image": IMAGE,
    }

    def row(category, question_id, answer, seed):
        return {
            "category": category,
            "subcategory": "chart",
            "visual_input": "1",
            "set_id": "0",
            "figure_id": "1",
            "sample_note": "",
            "question_id": question_id,
            "question": "Is the left bar taller than the right bar?",
            "gt_answer_details": "The left bar is taller.",
            "gt_answer": answer,
            "filename": f"./hallusion_bench/VD/chart/0_{question_id}.png",
            "image": image_value(seed),
        }

    rows = [row("VD", "0", "1", 0), row("VS", "1", "0", 1), row("VD", "2", "2", 2)]
    path = root / "HallusionBench"
    (path / "data").mkdir(parents=True)
    hf_dataset(rows, features).to_parquet(path / "data" / "image-00000-of-00001.parquet")
    return path, [], {"image": [("yes", YN, 1, []), ("no", YN, 1, [])]}, {"image": {MISSING_ANSWER: 1}}


def build_dynamath(root: Path):
    features = {
        "id": Value("string"),
        "question": Value("string"),
        "image": Value("string"),
        "decoded_image": IMAGE,
        "ground_truth": Value("string"),
        "answer_type": Value("string"),
        "subject": Value("string"),
        "knowledge_level": Value("string"),
    }

    def row(identifier, question, answer, answer_type, seed):
        return {
            "id": identifier,
            "question": question,
            "image": f"{identifier}.png",
            "decoded_image": image_value(seed),
            "ground_truth": answer,
            "answer_type": answer_type,
            "subject": "graph theory",
            "knowledge_level": "undergraduate",
        }

    variant1 = [
        row("1", "Is the graph connected?\n(A) yes\n(B) no", "A", "multiple choice", 0),
        row("2", "What is the slope of the line?", "1.414", "float", 1),
    ]
    variant2 = [
        row("1", "Is the graph connected?\n(A) yes\n(B) no", "B", "multiple choice", 2),
        row("2", "<image><image> Compare the two plots.", "0.5", "float", 3),
    ]
    path = root / "DynaMath"
    splits = {"sample_variant1": variant1, "sample_variant2": variant2}
    datasets.DatasetDict({name: hf_dataset(rows, features) for name, rows in splits.items()}).save_to_disk(path)
    expected = {
        "sample_variant1": [("A", MC, 1, ["yes", "no"]), ("1.414", FF, 1, [])],
        "sample_variant2": [("B", MC, 1, ["yes", "no"])],
    }
    skips = {"sample_variant1": {}, "sample_variant2": {PLACEHOLDER_MISMATCH: 1}}
    return path, ["--splits", "sample_variant1", "sample_variant2"], expected, skips


def build_logicvista(root: Path):
    names = ["question", "answer", "reasoning", "skill", "broad_capability", "specific_capability", "id"]
    columns = {name: Value("string") for name in names} | {"image": IMAGE}
    rows = [
        ("Which shape comes next? Choose from A: circle, B: square, C: star, D: cross", "C", "0"),
        ("Which two statements are true? A, B, C or D", "A, C", "1"),
        ("   ", "B", "2"),
        # One real question numbers its options and answers with a number.
        ("Which figure completes the row? Options: 1, 2, 3, 4, 5", "3", "3"),
    ]
    records = [
        {
            "question": question,
            "answer": answer,
            "reasoning": "",
            "skill": "inductive",
            "broad_capability": "patterns",
            "specific_capability": "sequences",
            "id": identifier,
            "image": image_value(int(identifier)),
        }
        for question, answer, identifier in rows
    ]
    path = root / "logicvista_test.parquet"
    hf_dataset(records, columns).to_parquet(path)
    expected = {"test": [("C", MC, 1, []), ("A,C", MC, 1, []), ("3", FF, 1, [])]}
    return path, [], expected, {"test": {MISSING_QUESTION: 1}}


CASES = {
    "geo3k": (geo3k.SPEC, build_geo3k),
    "virl39k": (virl39k.SPEC, build_virl39k),
    "mmk12": (mmk12.SPEC, build_mmk12),
    "mathverse": (mathverse.SPEC, build_mathverse),
    "mathvision": (mathvision.SPEC, build_mathvision),
    "mathvista": (mathvista.SPEC, build_mathvista),
    "wemath": (wemath.SPEC, build_wemath),
    "hallusionbench": (hallusionbench.SPEC, build_hallusionbench),
    "dynamath": (dynamath.SPEC, build_dynamath),
    "logicvista": (logicvista.SPEC, build_logicvista),
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Every fixture converted once through the converter's command line: name -> (out_dir, manifest, expected)."""
    results = {}
    for name, (spec, build) in CASES.items():
        source, extra_args, expected_rows, expected_skips = build(tmp_path_factory.mktemp(f"{name}_source"))
        out_dir = tmp_path_factory.mktemp(f"{name}_out")
        argv = ["--local_save_dir", str(out_dir), "--local_dataset_path", str(source), *extra_args]
        manifest = converter_main(spec, argv)
        results[name] = (out_dir, manifest, expected_rows, expected_skips)
    return results


def read_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("name", list(CASES))
def test_converter_writes_verl_rows(converted, name):
    out_dir, manifest, expected_rows, expected_skips = converted[name]
    assert set(manifest["splits"]) == set(expected_skips)
    for split, skips in expected_skips.items():
        rows = read_rows(out_dir / f"{split}.parquet")
        expected = expected_rows[split]
        assert [row["reward_model"]["ground_truth"] for row in rows] == [truth for truth, *_ in expected]
        for row, (_, answer_type, image_count, choices) in zip(rows, expected, strict=True):
            assert row["data_source"] == name
            assert row["reward_model"]["style"] == "rule"
            assert row["extra_info"]["answer_type"] == answer_type
            assert row["extra_info"]["choices"] == choices
            assert row["extra_info"]["split"] == split
            [message] = row["prompt"]
            assert message["role"] == "user"
            assert message["content"].count("<image>") == len(row["images"]) == image_count
            assert "<think>" in message["content"] and "\\boxed{}" in message["content"]
            assert row["extra_info"]["question"].strip() in message["content"]
            if "<image>" not in row["extra_info"]["question"]:  # images first, the question right after them
                assert message["content"].startswith("<image>" * image_count + row["extra_info"]["question"].strip())
            for image in row["images"]:
                assert Image.open(io.BytesIO(image["bytes"])).size == (64, 48)
        entry = manifest["splits"][split]
        assert entry["rows_written"] == len(rows) == len(expected)
        assert entry["rows_read"] == len(expected) + sum(skips.values())
        assert entry["skipped_by_reason"] == skips
        assert [skipped["reason"] for skipped in entry["skipped_rows"]] == [
            r for r, n in skips.items() for _ in range(n)
        ]
        assert entry["sha256"] == sha256_of(out_dir / f"{split}.parquet")
    assert json.loads((out_dir / MANIFEST_NAME).read_text()) == manifest
    assert not list(out_dir.glob(".*partial")), "staging files must not remain"


def test_skipped_rows_are_named_by_source_id(converted):
    _, manifest, _, _ = converted["virl39k"]
    skipped = {row["id"]: row["reason"] for row in manifest["splits"]["train"]["skipped_rows"]}
    assert skipped == {"q3": IMAGE_NOT_FOUND, "q4": MISSING_ANSWER}


def test_prompts_list_separate_choices_and_answer_forms(converted):
    vista = read_rows(converted["mathvista"][0] / "testmini.parquet")
    assert "Options:\nA. 145°\nB. 35°\nC. 55°" in vista[0]["prompt"][0]["content"]
    assert "1 decimal place" in vista[1]["prompt"][0]["content"]
    assert json.loads(vista[1]["extra_info"]["details"])["precision"] == 1.0
    assert vista[0]["extra_info"]["answer"] == "35°", "extra_info keeps the source's own answer"
    verse = read_rows(converted["mathverse"][0] / "testmini.parquet")
    assert [row["extra_info"]["subset"] for row in verse][:3] == ["Text Dominant", "Vision Intensive", "Vision Only"]
    assert "Answer the question shown in the image." in verse[2]["prompt"][0]["content"]
    assert [row["extra_info"]["answer"] for row in verse[3:6]] == ["C\nD", "C\nD", "053 ^\\circ T"]
    for row in verse[3:8]:
        assert "give the letter of the correct option" in row["prompt"][0]["content"]
    logic = read_rows(converted["logicvista"][0] / "test.parquet")
    assert all("\\boxed{A, C}" in row["prompt"][0]["content"] for row in logic[:2])
    assert "number of the correct option" in logic[2]["prompt"][0]["content"]
    assert "letter" not in logic[2]["prompt"][0]["content"]
    hallusion = read_rows(converted["hallusionbench"][0] / "image.parquet")
    assert [row["extra_info"]["id"] for row in hallusion] == ["VD_chart_0_1_0", "VS_chart_0_1_1"]
    assert "Yes or No" in hallusion[0]["prompt"][0]["content"]


def test_answers_in_every_source_shape_are_graded_by_the_converted_rows(converted):
    """A right answer scores 1 and a wrong one 0 on the rows as converted (ground truth and extra_info as veRL
    passes them to the reward), for MathVerse's two-letter and option-text answers and LogicVista's number."""
    from verl_tor.eval.rewards import compute_score

    def accuracy(row: dict, prediction: str) -> float:
        response = f"<think>Look at the figure.</think> \\boxed{{{prediction}}}"
        return compute_score(row["data_source"], response, row["reward_model"]["ground_truth"], row["extra_info"])[
            "acc"
        ]

    verse = read_rows(converted["mathverse"][0] / "testmini.parquet")
    logic = read_rows(converted["logicvista"][0] / "test.parquet")
    right = {
        (3, "C, D"),
        (3, "D,C"),
        (4, "C and D"),  # C\nD, with and without the options in the question
        (5, "A"),
        (6, "A"),
        (6, "(A)"),  # 053 ^\circ T, listed as option A; Vision Only
        (7, "B"),
        (7, "False"),  # the text "False", option B
        (8, "Neither"),  # a text that is no option: graded as text
    }
    wrong = {(3, "C"), (3, "D"), (4, "A, B"), (5, "B"), (6, "B"), (7, "A"), (7, "True"), (8, "A")}
    assert [accuracy(verse[index], pred) for index, pred in sorted(right)] == [1.0] * len(right)
    assert [accuracy(verse[index], pred) for index, pred in sorted(wrong)] == [0.0] * len(wrong)
    assert (accuracy(logic[2], "3"), accuracy(logic[2], "C"), accuracy(logic[2], "2")) == (1.0, 0.0, 0.0)


def test_outputs_share_one_schema_and_veRL_loads_them_with_pixels(converted, tiny_model_dir, tmp_path):
    from omegaconf import OmegaConf
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    files = sorted(str(path) for out_dir, *_ in converted.values() for path in out_dir.glob("*.parquet"))
    expected_rows = sum(len(rows) for *_, expected, _ in converted.values() for rows in expected.values())
    config = OmegaConf.create(
        {
            "prompt_key": "prompt",
            "image_key": "images",
            "max_prompt_length": 4096,
            "filter_overlong_prompts": True,
            # None: filter in this process. `datasets` runs even num_proc=1 through a forked pool, which
            # deadlocks once other tests in the session have started torch/gloo threads.
            "filter_overlong_prompts_workers": None,
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    processor = hf_processor(tiny_model_dir)
    dataset = RLHFDataset(files, hf_tokenizer(tiny_model_dir), config, processor)
    # The overlong-prompt filter drops any row whose images or prompt fail to process: all must survive.
    assert len(dataset) == expected_rows
    sources = set()
    for index in range(len(dataset)):
        item = dataset[index]
        sources.add(item["data_source"])
        messages = item["raw_prompt"]
        images, _, _ = RLHFDataset._process_multi_modal_info(messages, dataset.image_patch_size, config)
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[text], images=images, return_tensors="pt")
        placeholders = sum(part["type"] == "image" for part in messages[0]["content"])
        assert placeholders >= 1
        assert inputs["image_grid_thw"].shape[0] == len(images) == placeholders
        assert inputs["pixel_values"].shape[0] == int(inputs["image_grid_thw"].prod(dim=1).sum())
        assert item["extra_info"]["answer_type"] in (MC, YN, FF)
    assert sources == set(CASES)


def test_every_converter_is_a_named_data_source():
    assert set(CASES) == set(DATA_SOURCES)
    assert list(BENCHMARKS.values()) == ["MathVerse", "MathVision", "MathVista", "WeMath", "HallusionBench"]
    assert all(spec.name == name for name, (spec, _) in CASES.items())


# --------------------------------------------------------------------------------------------- errors and atomicity


def test_wrong_schema_is_a_clear_error_and_writes_nothing(tmp_path):
    source = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"question": ["q"], "answer": ["A"]}), source)
    out_dir = tmp_path / "out"
    with pytest.raises(DataPrepError, match=r"lacks columns \['image'\]"):
        convert_dataset(logicvista.SPEC, out_dir, ["test"], source)
    assert list(out_dir.iterdir()) == []


def test_failed_run_keeps_previous_outputs_whole(tmp_path):
    source, _, _, _ = build_geo3k(tmp_path)
    out_dir = tmp_path / "out"
    manifest = convert_dataset(geo3k.SPEC, out_dir, ["train"], source)
    before = (out_dir / "train.parquet").read_bytes()
    # The "test" split's only row has no answer: the run fails after converting "train" again.
    with pytest.raises(DataPrepError, match="no row could be converted"):
        convert_dataset(geo3k.SPEC, out_dir, ["train", "test"], source)
    assert (out_dir / "train.parquet").read_bytes() == before
    assert sorted(path.name for path in out_dir.iterdir()) == [MANIFEST_NAME, "train.parquet"]
    assert json.loads((out_dir / MANIFEST_NAME).read_text()) == manifest


def test_single_split_copy_must_name_its_split(tmp_path):
    source = tmp_path / "one.parquet"
    pq.write_table(pa.table({"id": ["1"]}), source)
    with pytest.raises(DataPrepError, match="single split"):
        convert_dataset(mmk12.SPEC, tmp_path / "out", ["train", "test"], source)


def test_command_line_runs_as_a_module_and_reports_errors(tmp_path):
    source, _, _, _ = build_logicvista(tmp_path)
    out_dir = tmp_path / "out"
    command = [sys.executable, "-m", "verl_tor.data_prep.logicvista", "--local_save_dir", str(out_dir)]
    done = subprocess.run(
        [*command, "--local_dataset_path", str(source)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "logicvista/test: 3 of 4 rows, skipped {'missing_question': 1}" in done.stdout
    assert (out_dir / "test.parquet").is_file()
    failed = subprocess.run(
        [*command, "--local_dataset_path", str(tmp_path / "absent")], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert failed.returncode == 1
    assert "does not exist" in failed.stderr and "Traceback" not in failed.stderr


def test_make_targets_call_the_converters():
    done = subprocess.run(
        ["make", "-n", "data-geo3k", "data-virl39k", "data-mmk12", "data-eval", "DATA_ROOT=/data/x"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    for name in CASES:
        assert f"-m verl_tor.data_prep.{name} --local_save_dir /data/x/{name}" in done.stdout


# ----------------------------------------------------------------------------------------------------- text helpers


def test_choices_and_letters_are_parsed_from_source_formats():
    assert parse_choices("Find x.\nChoices:\nA:55°\nB:35°") == ["55°", "35°"]
    assert parse_choices("(A) yes\n(B) no\n(D) skipped") == ["yes", "no"]
    assert parse_choices("A. 3; B. 4; C. 5", separator=";") == ["3", "4", "5"]
    assert parse_choices("A. only one option") == []
    assert option_letters("(B)") == "B"
    assert option_letters("C, A") == "A,C"
    assert option_letters("a") is None and option_letters("12") is None
    assert option_letters("C\nD") == "C,D" and option_letters("C\n\nD") == "C,D"
    assert option_letters("C D") is None and option_letters("CD") is None
    assert choice_letter("35°", ["145°", "35°"]) == "B"
    assert choice_letter("B", ["145°", "35°"]) == "B"
    assert choice_letter("053 ^\\circ T", ["127° T", "053^{\\circ} T"]) == "B"
    assert choice_letter("false", ["True", "False"]) == "B"
    with pytest.raises(SkipRow):  # two options read alike: no guess
        choice_letter("5 cm", ["5cm", "5  cm"])
    assert unbox("\\boxed{17^\\circ}") == "17^\\circ"
    assert unbox("17") == "17"


def test_image_files_are_found_by_path_in_folders_and_archives(tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(encoded(1))
    with zipfile.ZipFile(tmp_path / "more.zip", "w") as archive:
        archive.writestr("ViRL39K/images/b.jpg", encoded(2, "JPEG"))
    store = ImageStore(tmp_path)
    assert image_bytes("images/a.png", store) == encoded(1)
    assert image_bytes({"bytes": None, "path": "./images/b.jpg"}, store) == encoded(2, "JPEG")
    assert image_bytes(drawn(3), store)[:4] == b"\x89PNG"
    with pytest.raises(SkipRow) as missing:
        image_bytes("images/c.png", store)
    assert missing.value.reason == IMAGE_NOT_FOUND
    # Without a dataset folder a relative path means nothing, even if the working directory has such a file.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SkipRow) as unrooted:
        image_bytes("images/a.png", ImageStore(None))
    assert unrooted.value.reason == IMAGE_NOT_FOUND
    with pytest.raises(SkipRow) as broken:
        image_bytes(encoded(1)[:40], store)
    assert broken.value.reason == UNREADABLE_IMAGE
