"""The audit without Ray: its statistics against hand computations, every method's choices against a float64 brute
force, audit.json's comparisons against counts made here, and the command line's checks of bad inputs (each stops
with a message naming what is wrong before anything runs, and leaves nothing behind)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from verl_tor.audit import AuditSettings
from verl_tor.audit.__main__ import build_command, main, parse_args
from verl_tor.audit.methods import (
    AuditMethod,
    MethodResult,
    ScoreInputs,
    counterfactuals_needed,
    resolve_methods,
)
from verl_tor.audit.report import AuditSample, build_audit, json_ready, token_set_labels
from verl_tor.audit.stats import average_ranks, jaccard, precision_recall, share, spearman
from verl_tor.methods.config import TokenCreditConfig

# ---- statistics ------------------------------------------------------------------------------------------------


def test_jaccard_and_share_by_hand():
    a = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    b = np.array([0, 1, 1, 1, 0, 0], dtype=bool)
    assert jaccard(a, b) == 2 / 4  # {1, 2} of {0, 1, 2, 3}
    assert share(a, b) == 2 / 3  # of A's three tokens, B holds two
    assert share(b, a) == 2 / 3
    assert share(a, np.zeros(6, bool)) == 0.0
    assert math.isnan(share(np.zeros(6, bool), a))
    assert math.isnan(jaccard(np.zeros(6, bool), np.zeros(6, bool)))
    assert share(np.array([1, 0, 0, 0], bool), np.array([1, 1, 1, 1], bool)) == 1.0  # not symmetric
    assert share(np.array([1, 1, 1, 1], bool), np.array([1, 0, 0, 0], bool)) == 0.25


def test_spearman_with_ties_by_hand():
    # Ranks x: 1, 2.5, 2.5, 4; y: 1, 3, 2, 4. Centred: (-1.5, 0, 0, 1.5) and (-1.5, 0.5, -0.5, 1.5):
    # ρ = 4.5 / sqrt(4.5 · 5).
    x, y = np.array([0.1, 0.5, 0.5, 9.0]), np.array([-3.0, 2.0, 1.0, 7.0])
    assert average_ranks(x).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert spearman(x, y) == pytest.approx(4.5 / math.sqrt(4.5 * 5), rel=1e-12)
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)  # any increasing map of the same scores
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(4)))  # a constant score has no ranking
    # Non-finite positions are left out of both sides: the same as the finite pairs alone.
    assert spearman(np.append(x, np.nan), np.append(y, 1.0)) == spearman(x, y)


def test_precision_recall_by_hand():
    selected = np.array([1, 1, 0, 0, 1], bool)
    truth = np.array([1, 0, 1, 0, 0], bool)
    assert precision_recall(selected, truth) == (1 / 3, 1 / 2)
    precision, recall = precision_recall(np.zeros(5, bool), truth)
    assert math.isnan(precision) and recall == 0.0


# ---- methods ---------------------------------------------------------------------------------------------------


def brute_force_top(scores: list[torch.Tensor], masks: list[torch.Tensor], real: list[bool], fraction: float):
    """ToR's batch selection in float64 by sorting: the ⌈α·N⌉ largest positive scores of the real samples' valid
    tokens, ties to the earlier sample and token."""
    entries = [
        (-float(score[t]), row, t)
        for row, (score, mask, keep) in enumerate(zip(scores, masks, real, strict=True))
        if keep
        for t in range(len(score))
        if mask[t] and score[t] > 0
    ]
    n_valid = sum(int(mask.sum()) for mask, keep in zip(masks, real, strict=True) if keep)
    chosen = {(row, t) for _, row, t in sorted(entries)[: math.ceil(round(fraction * n_valid, 9))]}
    return [torch.tensor([(row, t) in chosen for t in range(len(score))]) for row, score in enumerate(scores)]


@pytest.fixture
def inputs() -> ScoreInputs:
    """Three responses and a padding row: a tie at the boundary, a response without an image (S = 0), an invalid
    token with the largest scores."""
    masks = [torch.tensor([1, 1, 1, 0]), torch.tensor([1, 1, 1]), torch.tensor([1, 1, 1, 1, 1]), torch.tensor([1, 1])]
    return ScoreInputs(
        response_mask=masks,
        is_padding=[False, False, False, True],
        entropy=[torch.tensor(v) for v in ([0.2, 0.9, 0.5, 9.0], [0.5, 0.1, 0.3], [0.0, 0.7, 0.5, 0.4, 0.6], [5.0, 5])],
        truncated_entropy=[
            torch.tensor(v) for v in ([0.1, 0.8, 0.4, 9.0], [0.4, 0.0, 0.3], [0.0, 0.6, 0.4, 0.4, 0.5], [5.0, 5])
        ],
        truncated_top_p=0.95,
        # |Δ| = the sensitivities SENSITIVITY; the second response has no image.
        old_log_probs=[torch.zeros(len(v)) for v in SENSITIVITY],
        counterfactual_log_probs={"remove_image": [-torch.tensor(v) for v in SENSITIVITY]},
        has_image=[True, False, True, True],
    )


SENSITIVITY = ([0.3, 0.0, 2.0, 8.0], [0.0, 0.0, 0.0], [0.1, 0.3, 0.3, 1.5, 0.2], [9.0, 9])


def _method(name: str, **overrides) -> AuditMethod:
    return AuditMethod(name, name, TokenCreditConfig.from_mapping({"method": name, **overrides}))


@pytest.mark.parametrize("top_p", [0.95, 1.0])
def test_tor_entry_selects_and_weights_as_a_brute_force(inputs, top_p):
    method = _method(
        "tor", reasoning_quantile=0.4, perception_quantile=0.3, perception_weight=0.5, other_weight=0.1,
        entropy_top_p=top_p,
    )  # fmt: skip
    result = method.compute(inputs)
    real = [not pad for pad in inputs.is_padding]
    entropy = inputs.truncated_entropy if top_p < 1 else inputs.entropy
    reasoning = brute_force_top(entropy, inputs.response_mask, real, 0.4)
    perception = brute_force_top([torch.tensor(v) for v in SENSITIVITY], inputs.response_mask, real, 0.3)
    for row in range(3):
        assert result.sets["reasoning"][row].tolist() == reasoning[row].tolist()
        assert result.sets["perception"][row].tolist() == perception[row].tolist()
        expected = [
            0.0 if not valid else 1.0 if r else 0.5 if p else 0.1
            for valid, r, p in zip(inputs.response_mask[row].tolist(), reasoning[row], perception[row], strict=True)
        ]
        assert result.weights[row].tolist() == pytest.approx(expected)
    assert result.weights[3].tolist() == [0.0, 0.0]  # padding: no selection, no weight
    assert all(torch.equal(a, b[: len(a)]) for a, b in zip(result.scores["reasoning"][:3], entropy, strict=False))
    # 11 valid tokens: ⌈0.3·11⌉ = 4 perception tokens: 2.0, 1.5 and one of three tied at 0.3 (sample 0's).
    assert sum(int(mask.sum()) for mask in result.sets["perception"]) == 4
    assert result.thresholds["perception"] == pytest.approx(0.3)
    assert result.counterfactual == "remove_image"


def test_grpo_entry_weights_every_valid_token_one(inputs):
    result = _method("grpo").compute(inputs)
    assert [w.tolist() for w in result.weights] == [[1, 1, 1, 0], [1, 1, 1], [1, 1, 1, 1, 1], [0, 0]]
    assert result.sets == {} and result.scores == {} and result.counterfactual is None


def test_method_table_names_unknown_methods_and_lists_the_passes():
    with pytest.raises(ValueError, match=r"unknown method\(s\) nope; known: tor, grpo, entropy_top20, vppo, pgpo"):
        resolve_methods(["tor", "vppo", "nope"])
    methods = resolve_methods(["grpo", "tor", "tor", "vppo", "pgpo", "entropy_top20"])
    assert [m.name for m in methods] == ["grpo", "tor", "vppo", "pgpo", "entropy_top20"]
    assert counterfactuals_needed(methods) == ["remove_image", "black_patches", "mask_image_attention"]
    assert counterfactuals_needed(resolve_methods(["grpo", "entropy_top20"])) == []


def test_audit_settings_section():
    assert AuditSettings.from_mapping({"out": "/x", "methods": "tor, grpo"}).methods == ["tor", "grpo"]
    with pytest.raises(ValueError, match="tor_audit.typo"):
        AuditSettings.from_mapping({"out": "/x", "typo": 1})
    with pytest.raises(ValueError, match="tor_audit.out"):
        AuditSettings.from_mapping({"methods": ["tor"]})


# ---- audit.json ------------------------------------------------------------------------------------------------


def demo_sample(index: int, texts: list[str], valid: list[bool] | None = None, acc: float = 1.0) -> AuditSample:
    from verl_tor.demo.task import DATA_SOURCE

    return AuditSample(
        index=index,
        uid=f"u{index // 2}",
        data_source=DATA_SOURCE,
        prompt="<|vision_start|><|image_pad|>×4<|vision_end|>red 1, green 2 ...",
        reward=acc,
        acc=acc,
        has_image=True,
        token_ids=[hash(t) % 1000 for t in texts],
        token_texts=texts,
        valid=valid or [True] * len(texts),
    )


def mask_rows(*rows) -> list[torch.Tensor]:
    return [torch.tensor(row, dtype=torch.bool) for row in rows]


def test_build_audit_counts_overlaps_correlations_and_ground_truth_by_hand():
    # Rows 0 and 2 are real, row 1 padding. Valid tokens: row 0 all four, row 2 the first three (8 + its last not).
    samples = [
        demo_sample(0, ["red", " 1", " 3", "<|im_end|>"]),
        demo_sample(2, ["blue", " 3", " 1", "<|im_end|>"], valid=[True, True, True, False], acc=0.0),
    ]
    a = MethodResult(
        scores={"perception": [torch.tensor([3.0, 1.0, 0.5, 0.2]), torch.zeros(2), torch.tensor([2.0, 0.1, 0, 9])]},
        sets={"perception": mask_rows([1, 0, 0, 0], [0, 0], [1, 1, 0, 1])},
        weights=[torch.tensor([1.0, 0, 0, 0]), torch.zeros(2), torch.tensor([1.0, 1, 0, 0])],
        thresholds={"perception": 0.1},
        counterfactual="remove_image",
        config={},
    )
    b = MethodResult(
        scores={"selected": [torch.tensor([1.0, 2.0, 0.4, 0.3]), torch.zeros(2), torch.tensor([0.5, 0.2, 0.1, 0])]},
        sets={"selected": mask_rows([1, 1, 0, 0], [0, 0], [0, 1, 0, 0])},
        weights=[torch.tensor([2.0, 2, 0.5, 0.5]), torch.zeros(2), torch.tensor([2.0, 0.5, 0.5, 0])],
        thresholds={"selected": 0.5},
        counterfactual=None,
        config={},
    )
    methods = [_method("tor"), _method("grpo")]  # names only: the results are the hand-made ones
    audit = build_audit(samples, methods, {"tor": a, "grpo": b}, {}, {"model": "m"}, {"u0": ["data:,"]})

    assert audit["n_samples"] == 2 and audit["n_valid_tokens"] == 7
    # Selected valid tokens ((2,3) is invalid): A = {(0,0), (2,0), (2,1)}, B = {(0,0), (0,1), (2,1)}.
    assert audit["methods"]["tor"]["sets"]["perception"]["count"] == 3
    assert audit["methods"]["tor"]["sets"]["perception"]["fraction"] == pytest.approx(3 / 7, rel=1e-5)
    assert audit["overlap"]["labels"] == ["tor/perception", "grpo/selected"]
    assert audit["overlap"]["jaccard"][0][1] == pytest.approx(2 / 4, rel=1e-5)
    assert audit["overlap"]["share"][0][1] == pytest.approx(2 / 3, rel=1e-5)
    # Scores on the 7 valid tokens: A (3, 1, .5, .2, 2, .1, 0), B (1, 2, .4, .3, .5, .2, .1).
    expected = spearman(np.array([3, 1, 0.5, 0.2, 2, 0.1, 0]), np.array([1, 2, 0.4, 0.3, 0.5, 0.2, 0.1]))
    assert audit["correlation"]["spearman"][0][1] == pytest.approx(expected, rel=1e-5)
    # Ground truth: the colour words (0,0) and (2,0); A holds both and a number, B one of them and two numbers.
    assert audit["ground_truth"]["image_tokens"] == 2
    assert audit["methods"]["tor"]["ground_truth"]["perception"] == {
        "precision": pytest.approx(2 / 3, rel=1e-5),
        "recall": 1.0,
    }
    assert audit["methods"]["grpo"]["ground_truth"]["selected"] == {
        "precision": pytest.approx(1 / 3, rel=1e-5),
        "recall": 0.5,
    }
    assert audit["methods"]["grpo"]["mean_weight"] == pytest.approx((2 + 2 + 0.5 + 0.5 + 2 + 0.5 + 0.5) / 7, rel=1e-5)
    assert audit["methods"]["tor"]["sets"]["perception"]["top_tokens"][0][1] == 1
    record = audit["samples"][1]
    assert record["index"] == 2 and record["correct"] is False
    assert record["tokens"]["image"] == [True, False, False, False]
    assert record["methods"]["tor"]["set"] == ["perception", "perception", "none", "perception"]
    assert record["methods"]["grpo"]["w"] == [2.0, 0.5, 0.5, 0.0]
    json.dumps(json_ready(audit), allow_nan=False)  # writable as strict JSON


def test_token_set_labels_and_json_ready():
    sets = {"reasoning": torch.tensor([1, 1, 0, 0]), "perception": torch.tensor([1, 0, 1, 0])}
    assert token_set_labels(sets) == ["both", "reasoning", "perception", "none"]
    assert token_set_labels({"a": torch.tensor([1, 0]), "b": torch.tensor([1, 1])}) == ["a+b", "b"]
    assert json_ready({"x": [float("nan"), 1.0, (float("inf"),)]}) == {"x": [None, 1.0, [None]]}


# ---- the command line: bad inputs stop before anything runs, and nothing is written ----------------------------


@pytest.fixture
def out_dir(tmp_path):
    return tmp_path / "outputs" / "audit"


def stops_with(args: list[str], out_dir, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main([*args, "--out", str(out_dir)])
    assert stop.value.code not in (0, None)
    assert not out_dir.exists()
    parent = out_dir.parent
    assert not parent.exists() or not any(p.name.startswith(f".{out_dir.name}.partial") for p in parent.iterdir())
    return str(stop.value.code) + capsys.readouterr().err


def test_unknown_method_is_named(tiny_model_dir, colour_data_dir, out_dir, capsys):
    message = stops_with([tiny_model_dir, colour_data_dir, "--cpu", "--methods", "tor,vpo"], out_dir, capsys)
    assert "--methods: unknown method(s) vpo; known: tor, grpo" in message


def test_folder_that_is_not_a_model(tmp_path, colour_data_dir, out_dir, capsys):
    (tmp_path / "empty").mkdir()
    message = stops_with([str(tmp_path / "empty"), colour_data_dir, "--cpu"], out_dir, capsys)
    assert "is not a model: it has no config.json" in message


def test_checkpoint_step_and_its_weightless_huggingface_folder(tmp_path, colour_data_dir, out_dir, capsys):
    hf = tmp_path / "global_step_3" / "actor" / "huggingface"
    hf.mkdir(parents=True)
    (hf / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    message = stops_with([str(tmp_path / "global_step_3"), colour_data_dir, "--cpu"], out_dir, capsys)
    assert "is a veRL checkpoint step, not a model: pass" in message and "actor/huggingface" in message
    message = stops_with([str(hf), colour_data_dir, "--cpu"], out_dir, capsys)
    assert "config.json but no weights" in message and "save_contents=[model,optimizer,extra,hf_model]" in message


def test_unsupported_model_family(tmp_path, colour_data_dir, out_dir, capsys):
    model = tmp_path / "llava"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llava"}))
    (model / "model.safetensors").write_bytes(b"")
    message = stops_with([str(model), colour_data_dir, "--cpu"], out_dir, capsys)
    assert "is a 'llava' model" in message and "qwen2_5_vl" in message


def test_dataset_without_images(tiny_model_dir, tmp_path, out_dir, capsys):
    text_only = tmp_path / "text.parquet"
    pd.DataFrame({"prompt": [[{"role": "user", "content": "hi"}]], "data_source": ["x"]}).to_parquet(text_only)
    message = stops_with([tiny_model_dir, str(text_only), "--cpu"], out_dir, capsys)
    assert "has no column images" in message
    empty_images = tmp_path / "empty_images.parquet"
    pd.DataFrame({"prompt": [[{"role": "user", "content": "hi"}]], "images": [[]]}).to_parquet(empty_images)
    message = stops_with([tiny_model_dir, str(empty_images), "--cpu"], out_dir, capsys)
    assert "none of its first 1 rows has an image" in message
    message = stops_with([tiny_model_dir, str(tmp_path / "missing"), "--cpu"], out_dir, capsys)
    assert "no data at" in message


def test_existing_output_folder_is_not_touched(tiny_model_dir, colour_data_dir, tmp_path, capsys):
    out = tmp_path / "done"
    out.mkdir()
    (out / "audit.json").write_text("{}")
    with pytest.raises(SystemExit) as stop:
        main([tiny_model_dir, colour_data_dir, "--cpu", "--out", str(out)])
    assert "exists; choose another --out" in str(stop.value.code)
    assert (out / "audit.json").read_text() == "{}"


# ---- the command line: the command it builds -------------------------------------------------------------------


def overrides_of(command: list[str]) -> dict[str, str]:
    """The last value of each ``key=value`` word (Hydra: a later override wins)."""
    return dict(word.lstrip("+").split("=", 1) for word in command if "=" in word and not word.startswith("--"))


def test_cpu_command_is_one_step_without_update_save_or_validation(tiny_model_dir, colour_data_dir, tmp_path):
    args = parse_args(
        [tiny_model_dir, colour_data_dir, "--cpu", "--prompts", "3", "--n", "2", "--", "tor.perception_quantile=0.2"]
    )
    command, env = build_command(args, str(tmp_path / "work"))
    assert command[1:3] == ["-m", "verl.trainer.main_ppo"]
    assert command.count("--config-name") == 1 and command[command.index("--config-name") + 1] == "tor_trainer"
    values = overrides_of(command)
    assert values["trainer.v1.trainer_mode"] == "tor_audit"
    assert values["tor_audit.methods"] == "[tor,grpo,entropy_top20,vppo,pgpo]" and values["tor_audit.out"] == str(
        tmp_path / "work"
    )
    assert values["data.train_batch_size"] == "3" and values["actor_rollout_ref.rollout.n"] == "2"
    assert values["trainer.total_training_steps"] == "1" and values["trainer.save_freq"] == "-1"
    assert values["trainer.val_before_train"] == "false" and values["trainer.resume_mode"] == "disable"
    assert values["actor_rollout_ref.rollout.name"] == "hf"
    assert values["data.train_files"] == os.path.join(colour_data_dir, "train.parquet")
    assert values["reward.custom_reward_function.path"] == "pkg://verl_tor.testing.colour_reward"
    assert values["tor.perception_quantile"] == "0.2"  # the user's overrides come last
    assert env["VERL_PLATFORM"] == "cpu"


def test_recipe_command_keeps_the_recipes_settings_and_appends_the_audits(
    tiny_model_dir, colour_data_dir, tmp_path, monkeypatch
):
    recipe = os.path.join(os.path.dirname(__file__), "..", "recipes", "qwen3_vl_4b_geo3k_grpo_tor.sh")
    monkeypatch.setenv("SMOKE", "1")
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "runs"))
    args = parse_args([tiny_model_dir, colour_data_dir, "--recipe", recipe, "--prompts", "2"])
    command, env = build_command(args, str(tmp_path / "work"))
    values = overrides_of(command)
    assert values["actor_rollout_ref.actor.kl_loss_type"] == "low_var_kl"  # the recipe's GRPO setting
    assert values["tor.entropy_top_p"] == "0.95"  # and its ToR settings
    assert values["actor_rollout_ref.rollout.n"] == "4"  # its responses per prompt (SMOKE=1: 4)
    assert values["actor_rollout_ref.model.path"] == tiny_model_dir  # MODEL replaces the recipe's
    assert values["trainer.v1.trainer_mode"] == "tor_audit" and values["data.train_batch_size"] == "2"
    assert values["actor_rollout_ref.actor.use_kl_loss"] == "false"  # no reference model to build
    assert command.count("--config-name") == 1
    assert env["VERL_PLATFORM"] == "cpu"  # the recipe's SMOKE=1 environment


def test_module_help_runs():
    done = subprocess.run(
        [sys.executable, "-m", "verl_tor.audit", "--help"], capture_output=True, text=True, timeout=120, check=True
    )
    assert "--methods" in done.stdout and "--recipe" in done.stdout


# ---- make audit ------------------------------------------------------------------------------------------------


def test_make_audit_finds_the_last_tor_checkpoint_and_tabulates_precision_and_recall(tmp_path):
    from verl_tor.audit.demo import last_tor_checkpoint, newest_demo, table

    run = tmp_path / "demo" / "20261203-090000"
    for step in (2, 9, 10):
        (run / "grpo_tor" / "checkpoints" / f"global_step_{step}" / "actor" / "huggingface").mkdir(parents=True)
    assert last_tor_checkpoint(str(run)).endswith(os.path.join("global_step_10", "actor", "huggingface"))
    assert newest_demo(str(tmp_path / "demo")) is None  # no warm start: not a complete run
    (run / "warm_start" / "model").mkdir(parents=True)
    assert newest_demo(str(tmp_path / "demo")) == str(run)

    tor = {"mean_weight": 0.4, "sets": {"perception": {"fraction": 0.3}}}
    tor["ground_truth"] = {"perception": {"precision": 0.5, "recall": 0.75}}
    grpo = {"mean_weight": 1.0, "sets": {}, "ground_truth": {}}
    audit = {"methods": {"tor": tor, "grpo": grpo}, "n_samples": 8, "n_valid_tokens": 32}
    audit["ground_truth"] = {"image_share": 0.25}
    lines = table({"warm start": audit}).splitlines()
    assert lines[2] == "| warm start | tor / perception | 0.30 | 0.50 | 0.75 | 0.40 |"
    assert lines[3] == "| warm start | grpo (every token) | 1.00 | – | – | 1.00 |"
    assert "of which 0.25 only the image decides" in lines[-1]
