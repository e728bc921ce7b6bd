"""compute_score: answers graded by type, the format term, hostile responses, threads, and veRL's own call path."""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from verl_tor.eval.rewards import compute_score

MC = {"answer_type": "multiple_choice", "choices": ["145°", "35°", "55°"]}


def answered(pred: str) -> str:
    return f"<think>Measure the angle first.</think> The answer is \\boxed{{{pred}}}."


def acc(pred: str, gold: str, extra_info=None, **kwargs) -> float:
    return compute_score("any", answered(pred), gold, extra_info, **kwargs)["acc"]


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("0.5", "\\frac{1}{2}"),
        ("\\frac{1}{2}", "0.5"),
        ("17", "17^\\circ"),
        ("17^{\\circ}", "17"),
        ("\\sqrt{8}", "2\\sqrt{2}"),
        ("(x+1)^2", "x^2+2x+1"),
        ("\\text{Kevin}", "Kevin"),
        ("Yes", "yes"),
    ],
)
def test_equivalent_free_form_answers_are_correct(pred, gold):
    assert acc(pred, gold, {"answer_type": "free_form"}) == 1.0


@pytest.mark.parametrize(
    ("pred", "gold"),
    [("0.25", "\\frac{1}{2}"), ("-3", "3"), ("18", "17^\\circ"), ("sey", "yes"), ("nivek", "Kevin")],
)
def test_different_free_form_answers_are_wrong(pred, gold):
    assert acc(pred, gold, {"answer_type": "free_form"}) == 0.0


@pytest.mark.parametrize("pred", ["B", "(B)", "b", "\\text{B}", "B. 35°", "(B) 35°", "Answer: B", "35°", "35"])
def test_multiple_choice_by_letter_or_by_option_text(pred):
    assert acc(pred, "B", MC) == 1.0


@pytest.mark.parametrize("pred", ["A", "(C)", "145°", "C. 35°", "A, B"])
def test_multiple_choice_other_option_is_wrong(pred):
    assert acc(pred, "B", MC) == 0.0


def test_several_correct_options_need_all_and_only_them():
    info = {"answer_type": "multiple_choice", "choices": []}
    assert acc("A, C", "A,C", info) == 1.0
    assert acc("C and A", "A,C", info) == 1.0
    assert acc("A", "A,C", info) == 0.0
    assert acc("A, B, C", "A,C", info) == 0.0


@pytest.mark.parametrize(
    ("pred", "gold"), [("Yes", "yes"), ("yes.", "yes"), ("\\text{No}", "no"), ("No, it is not", "no")]
)
def test_yes_no_variants(pred, gold):
    assert acc(pred, gold, {"answer_type": "yes_no"}) == 1.0
    assert acc(pred, "no" if gold == "yes" else "yes", {"answer_type": "yes_no"}) == 0.0


def test_answer_type_is_inferred_without_extra_info():
    assert acc("B", "B") == 1.0 and acc("(B)", "B") == 1.0
    assert acc("No", "no") == 1.0 and acc("Nope", "no") == 0.0
    assert acc("0.5", "\\frac{1}{2}") == 1.0


def test_extra_info_as_veRL_delivers_it():
    # Rows read through pandas hold numpy arrays; veRL's reward manager adds its own keys to the dict.
    info = {"answer_type": np.str_("multiple_choice"), "choices": np.array(["145°", "35°"], dtype=object)}
    info |= {"num_turns": None, "rollout_reward_scores": {}, "index": 3}
    assert acc("35°", "B", info) == 1.0
    assert acc("35°", "B", {"answer_type": "unknown", "choices": "not a list"}) == 0.0


def test_missing_boxed_answer_scores_zero():
    result = compute_score("any", "<think>so</think> The answer is 5.", "5")
    assert result == {"score": 0.0, "acc": 0.0, "format": 0.0, "pred": "", "row": ""}


def test_format_term_and_score():
    assert compute_score("any", answered("5"), "5") == {"score": 1.0, "acc": 1.0, "format": 1.0, "pred": "5", "row": ""}
    no_think = compute_score("any", "\\boxed{5}", "5")
    assert (no_think["acc"], no_think["format"], no_think["score"]) == (1.0, 0.0, pytest.approx(0.9))
    wrong = compute_score("any", answered("4"), "5")
    assert (wrong["acc"], wrong["format"], wrong["score"]) == (0.0, 1.0, pytest.approx(0.1))
    assert compute_score("any", "\\boxed{5}", "5", format_weight=0.0)["score"] == 1.0
    assert compute_score("any", answered("5"), "5", format_weight=0.5)["score"] == 1.0
    assert compute_score("any", "\\boxed{5}", "5", format_weight=0.5)["score"] == 0.5


@pytest.mark.parametrize(
    "response",
    [
        "<think>a</think><think>b</think>\\boxed{5}",  # two reasoning blocks
        "Sure. <think>a</think>\\boxed{5}",  # text before the reasoning
        "<think>a \\boxed{5}</think> done",  # the answer only inside the reasoning
        "<think>a</think>\\boxed{}",  # an empty answer
    ],
)
def test_format_is_one_reasoning_block_then_a_boxed_answer(response):
    assert compute_score("any", response, "5")["format"] == 0.0


def test_format_weight_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError, match="format_weight"):
        compute_score("any", answered("5"), "5", format_weight=1.5)


@pytest.mark.parametrize(
    "response",
    [
        "x" * 2_000_000,
        "\\boxed{" + "{" * 500_000,
        answered("{" * 300 + "1" + "}" * 300),
        answered("{" * 60 + "1" + "}" * 60),
        answered("x" * 5000),
        answered("\\frac{" * 200),
        "\\boxed{" * 100_000,
    ],
    ids=["long", "unclosed", "deep-long", "deep", "long-answer", "unclosed-fracs", "many-boxes"],
)
def test_hostile_responses_score_zero_quickly(response):
    start = time.monotonic()
    result = compute_score("any", response, "1")
    assert result["acc"] == 0.0 and result["score"] <= 0.1 and len(result["pred"]) <= 400
    assert time.monotonic() - start < 5.0


def test_non_string_inputs_score_zero():
    assert compute_score("any", None, "5")["acc"] == 0.0
    assert compute_score("any", answered("5"), None)["acc"] == 0.0


def test_slow_equivalence_is_cut_at_the_deadline_and_the_grader_replaced():
    assert acc("1/2", "0.5", {"answer_type": "free_form"}) == 1.0  # a grader is running before the clock starts
    start = time.monotonic()
    # math-verify would try to evaluate this tower of powers for seconds.
    assert acc("9^{9^{9^{9^{9}}}}", "1", {"answer_type": "free_form"}, grading_timeout_s=0.5) == 0.0
    assert time.monotonic() - start < 2.5
    assert acc("0.5", "\\frac{1}{2}", {"answer_type": "free_form"}) == 1.0


def test_grading_from_worker_threads():
    # veRL runs a synchronous scorer in an executor thread, where signal-based timeouts cannot run.
    cases = [("0.5", "\\frac{1}{2}", 1.0), ("0.25", "\\frac{1}{2}", 0.0), ("\\sqrt{8}", "2\\sqrt{2}", 1.0)] * 2
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: acc(case[0], case[1], {"answer_type": "free_form"}), cases))
    assert results == [expected for *_, expected in cases]


def test_veRL_loads_and_calls_it_from_the_documented_config(tiny_model_dir):
    import torch
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.trainer.ppo.reward import load_reward_manager
    from verl.utils import hf_tokenizer

    config = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": "pkg://verl_tor.eval.rewards",
                    "name": "compute_score",
                    "reward_kwargs": {"format_weight": 0.0},
                },
                "reward_manager": {"source": "register", "name": "naive"},
            }
        }
    )
    tokenizer = hf_tokenizer(tiny_model_dir)
    manager = load_reward_manager(config, tokenizer)
    # No <think> block: only with reward_kwargs' format_weight=0 does this correct answer score 1 (0.9 by default).
    response_ids = tokenizer.encode("so \\boxed{35°}", add_special_tokens=False)
    prompt_ids = tokenizer.encode("Find the angle.", add_special_tokens=False)
    data = DataProto.from_dict(
        tensors={
            "prompts": torch.tensor([prompt_ids]),
            "responses": torch.tensor([response_ids]),
            "attention_mask": torch.ones(1, len(prompt_ids) + len(response_ids), dtype=torch.long),
        },
        non_tensors={
            "data_source": np.array(["mathvista"], dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": "B"}], dtype=object),
            "extra_info": np.array([{**MC, "split": "testmini", "index": 7}], dtype=object),
        },
    )
    result = manager.loop.run_until_complete(manager.run_single(data))
    assert result["reward_score"] == 1.0
    # The row identity travels with the scores (veRL dumps them with each validation sample).
    info = {"score": 1.0, "acc": 1.0, "format": 0.0, "pred": "35°", "row": "mathvista:testmini:7"}
    assert result["reward_extra_info"] == info


def test_row_id_names_the_row_not_the_question():
    from verl_tor.eval.rewards import row_id, source_of_row

    same_text = {"answer_type": "multiple_choice", "split": "testmini"}
    first = compute_score("mathverse", answered("A"), "A", {**same_text, "index": 3})
    second = compute_score("mathverse", answered("A"), "C", {**same_text, "index": 4})
    assert (first["row"], first["acc"]) == ("mathverse:testmini:3", 1.0)
    assert (second["row"], second["acc"]) == ("mathverse:testmini:4", 0.0)
    assert row_id("verl_tor/colour", {"index": np.int64(2)}) == "verl_tor/colour::2"
    assert source_of_row("verl_tor/colour::2") == "verl_tor/colour"
    assert row_id("geo3k", {"split": "test"}) == ""
