"""The judge path against a real HTTP server on the loopback: grading by row identity (rows that share a question
with different answers), the harness's rule per benchmark, the on-disk cache, retries and counted failures."""

from __future__ import annotations

import json

import pytest
from eval_fixtures import fake_judge, write_benchmark, write_evaluation

from verl_tor.eval.grades import EvaluationError, load_evaluation
from verl_tor.eval.judge import Judge, ReplyCache

VISION_ONLY = "Answer the question shown in the image."  # 788 MathVerse rows share it
HALLUSION = "Is the curve above the line?"
ROWS = [
    ("mathverse", VISION_ONLY, "A", "multiple_choice"),
    ("mathverse", VISION_ONLY, "C", "multiple_choice"),
    ("hallusionbench", HALLUSION, "yes", "yes_no"),  # the original figure
    ("hallusionbench", HALLUSION, "no", "yes_no"),  # the edited figure: the opposite answer
    ("wemath", "Which shape has more sides?", "B", "multiple_choice"),
    ("mathvista", "How many bars are there?", "14", "free_form"),
]


def judge_for(url: str, tmp_path, **kwargs) -> Judge:
    return Judge(url, "judge-model", ReplyCache(tmp_path / "cache.sqlite3"), backoff_s=0.0, **kwargs)


@pytest.fixture
def benchmark(tmp_path):
    return write_benchmark(tmp_path / "bench.parquet", ROWS)


def test_rows_sharing_a_question_are_graded_against_their_own_answers(benchmark, tmp_path):
    responses = {
        # The same response to two rows with the same text: right for one, wrong for the other.
        "mathverse:testmini:0": ["<think>…</think> \\boxed{A}"],
        "mathverse:testmini:1": ["<think>…</think> \\boxed{A}"],
        "hallusionbench:testmini:0": ["\\boxed{Yes}"],
        "hallusionbench:testmini:1": ["\\boxed{Yes}"],
        "wemath:testmini:0": ["I pick the second, ANSWER=B"],
        "mathvista:testmini:0": ["There are ANSWER=14 bars"],
    }
    folder = write_evaluation(tmp_path / "eval", benchmark, responses)
    with fake_judge() as (url, handler):
        judged = load_evaluation(folder, judge_for(url, tmp_path))
    assert judged.grading == "judge judge-model" and handler.models == {"judge-model"}
    assert judged.grades["mathverse"] == {"mathverse:testmini:0": [1.0], "mathverse:testmini:1": [0.0]}
    assert judged.grades["hallusionbench"] == {"hallusionbench:testmini:0": [1.0], "hallusionbench:testmini:1": [0.0]}
    assert judged.accuracy() == {"mathverse": 0.5, "hallusionbench": 0.5, "wemath": 1.0, "mathvista": 1.0}
    # The rule-based grades of the same dump (veRL's reward per row) agree on the boxed answers.
    ruled = load_evaluation(folder)
    assert ruled.grading == "rule" and ruled.grades["mathverse"] == judged.grades["mathverse"]
    # MathVerse's boxed answers needed no extraction, only the judgement; HallusionBench no call at all.
    prompts = list(handler.requests)
    assert sum("Candidate answer:\nA" in p for p in prompts) == 2
    assert not any(HALLUSION in p for p in prompts)


def test_harness_rules_per_benchmark(benchmark, tmp_path):
    responses = {
        # No box: the judge extracts, then judges the extraction.
        "mathverse:testmini:1": ["so it is ANSWER=C"],
        # Exact yes/no after the box, as the harness: "Yes, it is" is not "yes".
        "hallusionbench:testmini:0": ["\\boxed{Yes, it is}"],
        # MathVista: the extraction must equal the ground truth exactly ("14.0" is not "14").
        "mathvista:testmini:0": ["ANSWER=14.0"],
        # WeMath: the letter.
        "wemath:testmini:0": ["ANSWER=(B)"],
    }
    folder = write_evaluation(tmp_path / "eval", benchmark, responses)
    with fake_judge() as (url, _):
        judged = load_evaluation(folder, judge_for(url, tmp_path))
    assert judged.accuracy() == {"mathverse": 1.0, "hallusionbench": 0.0, "mathvista": 0.0, "wemath": 1.0}


def test_replies_are_cached_on_disk_so_a_second_grading_sends_nothing(benchmark, tmp_path):
    responses = {"wemath:testmini:0": ["ANSWER=B"], "mathvista:testmini:0": ["ANSWER=14", "ANSWER=12"]}
    folder = write_evaluation(tmp_path / "eval", benchmark, responses, protocol="tor")
    with fake_judge() as (url, handler):
        first = judge_for(url, tmp_path)
        assert load_evaluation(folder, first).accuracy() == {"wemath": 1.0, "mathvista": 0.5}
        assert first.calls == 3 and sum(handler.requests.values()) == 3
        # A new process (new Judge, same cache file) grades the same responses without a request.
        again = judge_for(url, tmp_path)
        assert load_evaluation(folder, again).accuracy() == {"wemath": 1.0, "mathvista": 0.5}
        assert again.calls == 0 and sum(handler.requests.values()) == 3
        # Another judge model is another cache entry.
        other = Judge(url, "other-model", ReplyCache(tmp_path / "cache.sqlite3"), backoff_s=0.0)
        load_evaluation(folder, other)
        assert other.calls == 3


def test_failed_calls_are_retried_then_counted_never_graded_wrong(benchmark, tmp_path):
    responses = {
        "wemath:testmini:0": ["FLAKY ANSWER=B"],  # two 503s, then a reply
        "mathvista:testmini:0": ["FAIL ANSWER=14", "ANSWER=14"],  # one sample never gets a reply
        "mathverse:testmini:0": ["\\boxed{GARBLE}"],  # a judgement that is neither 1 nor 0
    }
    folder = write_evaluation(tmp_path / "eval", benchmark, responses)
    with fake_judge() as (url, handler):
        judge = judge_for(url, tmp_path, retries=2)
        judged = load_evaluation(folder, judge)
    assert judged.grades["wemath"] == {"wemath:testmini:0": [1.0]}
    assert judged.grades["mathvista"] == {"mathvista:testmini:0": [None, 1.0]}
    assert judged.grades["mathverse"] == {"mathverse:testmini:0": [None]}
    assert judge.failed_calls == 2 and judged.ungraded() == 2
    # Accuracy over graded samples only; an item with none left is not an item.
    assert judged.accuracy() == {"wemath": 1.0, "mathvista": 1.0}
    failing = [prompt for prompt in handler.requests if "FAIL" in prompt]
    assert [handler.requests[prompt] for prompt in failing] == [3]  # first try + 2 retries
    # Failures are not cached: a later grading asks again.
    with fake_judge() as (url, handler):
        load_evaluation(folder, judge_for(url, tmp_path, retries=0))
        assert any("FAIL" in prompt for prompt in handler.requests)


def test_an_unreachable_judge_fails_every_call(benchmark, tmp_path):
    folder = write_evaluation(tmp_path / "eval", benchmark, {"wemath:testmini:0": ["ANSWER=B"]})
    judge = judge_for("http://127.0.0.1:9/v1", tmp_path, retries=1, timeout_s=2)
    judged = load_evaluation(folder, judge)
    assert judged.ungraded() == 1 and judge.failed_calls == 1 and judged.accuracy() == {}


def test_mismatched_data_and_missing_row_ids_stop_with_the_reason(benchmark, tmp_path):
    folder = write_evaluation(tmp_path / "eval", benchmark, {"wemath:testmini:0": ["ANSWER=B"]})
    changed = write_benchmark(
        tmp_path / "changed.parquet", [("wemath", "Which shape has more sides?", "C", "multiple_choice")]
    )
    info = json.loads((folder / "run.json").read_text()) | {"val_files": str(changed)}
    (folder / "run.json").write_text(json.dumps(info))
    with fake_judge() as (url, _), pytest.raises(EvaluationError, match="the data changed"):
        load_evaluation(folder, judge_for(url, tmp_path))
    dump = folder / "generations" / "0.jsonl"
    dump.write_text(dump.read_text().replace('"row": "wemath:testmini:0"', '"row": ""'))
    with pytest.raises(EvaluationError, match="names no dataset row"):
        load_evaluation(folder)
    with pytest.raises(EvaluationError, match="no validation dump"):
        load_evaluation(tmp_path)


def test_avg8_evaluations_keep_rule_grading_with_a_judge(benchmark, tmp_path):
    responses = {"wemath:testmini:0": ["\\boxed{B}", "\\boxed{A}"]}
    folder = write_evaluation(tmp_path / "eval", benchmark, responses, protocol="avg8")
    with fake_judge() as (url, handler):
        evaluation = load_evaluation(folder, judge_for(url, tmp_path))
    assert evaluation.grading == "rule" and evaluation.grades == {"wemath": {"wemath:testmini:0": [1.0, 0.0]}}
    assert not handler.requests
