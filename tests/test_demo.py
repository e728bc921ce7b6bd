"""The CPU demo's own logic: metrics parsing, blocks, step times, summary, PNG, command lines, SFT data, the task
(generator, reward, ground-truth token labels), what-ToR-picked metrics, the canonical batch order.

No training runs here; ``make smoke`` runs the whole pipeline.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import statistics

import pytest

from verl_tor.demo import metrics
from verl_tor.demo.run import (
    GRPO,
    PERCEPTION_ONLY,
    REASONING_ONLY,
    STUDY_ARMS,
    TOR,
    TOR_CONFIG_DIR,
    DemoSettings,
    main_ppo_command,
    parse_args,
)
from verl_tor.demo.task import CONTENT, TABLE
from verl_tor.demo.warm_start import sft_overrides, sft_rows
from verl_tor.testing.synthetic_data import COLOURS

VAL = "val-core/verl_tor/colour_table/acc/mean@1"
# The task's table written out, independently of verl_tor.demo.task.
WRITTEN_TABLE = {"red": 1, "green": 2, "blue": 3, "yellow": 4}


def write_jsonl(path, entries) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for step, data in entries:
            f.write(json.dumps({"step": step, "data": data}) + "\n")
    return str(path)


def run_entries(rewards, step_times, val=None, tor=False):
    """File-logger lines as veRL writes them: validation at step 0, one line per training step."""
    entries = [(0, {VAL: val[0]})] if val else []
    for step, (reward, seconds) in enumerate(zip(rewards, step_times, strict=True), start=1):
        data = {metrics.REWARD: reward, metrics.STEP_TIME: seconds}
        if tor:
            data.update({"tor/perception_fraction": 0.3, "tor/reasoning_fraction": 0.3, "tor/mean_weight": 0.4})
        entries.append((step, data))
    if val:
        entries.append((len(rewards), {VAL: val[1]}))
    return entries


def test_read_metrics_merges_lines_of_a_step_and_skips_a_partial_last_line(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", run_entries([0.1, 0.5], [3.0, 2.0], val=(0.2, 0.6)))
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"step": 3, "data": {"critic/sc')  # veRL is still writing it
    records = metrics.read_metrics(path)
    assert sorted(records) == [0, 1, 2]
    assert records[2] == {metrics.REWARD: 0.5, metrics.STEP_TIME: 2.0, VAL: 0.6}
    assert metrics.read_metrics(str(tmp_path / "missing.jsonl")) == {}


def test_series_val_metric_and_training_steps(tmp_path):
    records = metrics.read_metrics(write_jsonl(tmp_path / "m.jsonl", run_entries([0.1, 0.5], [3, 2], (0.2, 0.6))))
    assert metrics.series(records, metrics.REWARD) == ([1, 2], [0.1, 0.5])
    assert metrics.val_metric_name(records) == VAL
    assert metrics.series(records, VAL) == ([0, 2], [0.2, 0.6])
    assert metrics.training_steps(records) == 2
    assert metrics.val_metric_name({1: {metrics.REWARD: 0.1}}) is None


def test_block_means_count_steps_from_one_and_keep_a_short_last_block():
    steps, values = list(range(1, 8)), [0.0, 1.0, 0.5, 0.5, 1.0, 1.0, 0.25]
    assert metrics.block_means(steps, values, 3) == [(1, 3, 0.5), (4, 6, pytest.approx(5 / 6)), (7, 7, 0.25)]


def test_median_step_time_drops_the_first_step():
    records = {s: {metrics.STEP_TIME: t} for s, t in zip([1, 2, 3, 4], [30.0, 2.0, 4.0, 3.0], strict=True)}
    assert metrics.median_step_time(records) == 3.0
    assert metrics.median_step_time({1: {metrics.STEP_TIME: 5.0}}) == 5.0
    assert math.isnan(metrics.median_step_time({}))
    # The inspector's own time is taken out step by step before the median.
    inspected = {s: {**records[s], "timing_s/tor_inspect": 0.5 * s} for s in records}
    assert metrics.median_step_time(inspected, excluding=("timing_s/tor_inspect",)) == statistics.median(
        [2.0 - 1.0, 4.0 - 1.5, 3.0 - 2.0]
    )


def test_summary_has_blocks_accuracy_and_the_time_ratio(tmp_path):
    grpo = metrics.read_metrics(write_jsonl(tmp_path / "g.jsonl", run_entries([0.2] * 4, [9, 2, 2, 2], (0.1, 0.5))))
    tor = metrics.read_metrics(
        write_jsonl(tmp_path / "t.jsonl", run_entries([0.4] * 4, [9, 3, 3, 3], (0.1, 0.7), tor=True))
    )
    tor[4]["val-aux/verl_tor/colour_table/colour/mean@1"] = 0.75
    text = metrics.summary_markdown({GRPO.name: grpo, TOR.name: tor}, block=2, notes=["a note"])
    assert "- a note" in text
    assert "| 1–2 | 3–4 | final | peak |" in text
    assert "| GRPO+ToR | 0.40 | 0.40 | 0.40 | 0.40 |" in text
    assert "step 0: 0.10, step 4: 0.70; parts at the last: colour 0.75" in text
    assert "| GRPO | 4 | 2.00 | 1.00 |" in text
    assert "| GRPO+ToR | 4 | 3.00 | 1.50 |" in text
    assert "GRPO+ToR: reasoning_fraction 0.30, perception_fraction 0.30, mean_weight 0.40" in text
    assert "What ToR picked" not in text


def test_summary_shows_what_tor_picked_per_block_and_links_the_page():
    row = dict.fromkeys(metrics.MECHANISM_HEADERS, 0.5) | {"samples": 4.0, "batch_samples": 4.0}
    mechanism = {1: {**row, "perception_precision": 0.2}, 2: {**row, "perception_precision": 0.4}, 3: row}
    text = metrics.summary_markdown({TOR.name: {}}, block=2, mechanism=mechanism, inspect_page="inspect.html")
    assert "[token inspector](inspect.html)" in text
    assert "| 1–2 | 0.30 | 0.50 | 0.50 | 0.50 | 0.50 | 0.50 |" in text
    assert "| 3–3 | 0.50 |" in text
    assert "recorded samples" not in text
    partial = {1: {**row, "samples": 2.0}}
    assert "at least 50% of each rollout batch" in metrics.summary_markdown({}, block=1, mechanism=partial)


def test_selected_fraction_is_the_union_of_both_sets():
    records = {
        1: {"tor/reasoning_fraction": 0.3, "tor/perception_fraction": 0.3, "tor/overlap_fraction": 0.2},
        2: {"tor/reasoning_fraction": 0.3},
    }
    steps, values = metrics.selected_fraction(records)
    assert steps == [1] and values == [pytest.approx(0.4)]


def test_plot_writes_a_png_with_and_without_the_mechanism_panel(tmp_path):
    grpo = metrics.read_metrics(write_jsonl(tmp_path / "g.jsonl", run_entries([0.2, 0.3], [2, 2], (0.1, 0.5))))
    tor = metrics.read_metrics(write_jsonl(tmp_path / "t.jsonl", run_entries([0.2, 0.4], [3, 3], tor=True)))
    mechanism = {step: dict.fromkeys(metrics.MECHANISM_HEADERS, 0.5) for step in (1, 2)}
    for name, panel in (("both.png", mechanism), ("grpo.png", None)):
        path = metrics.plot_curves({GRPO.name: grpo, TOR.name: tor}, str(tmp_path / name), mechanism=panel)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _overrides(command: list[str]) -> dict[str, str]:
    """Last value of every ``key=value`` argument (Hydra: later overrides win)."""
    return dict(arg.split("=", 1) for arg in command if "=" in arg and not arg.startswith("-"))


def test_arms_differ_only_in_the_config(tmp_path):
    settings = DemoSettings(steps=7, val_every=5, seed=3)
    grpo = main_ppo_command(GRPO, settings, "M", "D", str(tmp_path / "grpo"))
    tor = main_ppo_command(TOR, settings, "M", "D", str(tmp_path / "tor"))
    assert grpo[1:3] == ["-m", "verl.trainer.main_ppo"] == tor[1:3]
    assert "--config-name" not in grpo
    assert tor[3:7] == ["--config-path", TOR_CONFIG_DIR, "--config-name", "tor_trainer"]
    assert os.path.exists(os.path.join(TOR_CONFIG_DIR, "tor_trainer.yaml"))
    grpo_args, tor_args = _overrides(grpo), _overrides(tor)
    differing = {key for key in grpo_args.keys() | tor_args.keys() if grpo_args.get(key) != tor_args.get(key)}
    assert differing == {
        "trainer.experiment_name",
        "trainer.default_local_dir",
        "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH",
    }
    assert grpo_args["+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH"] == str(
        tmp_path / "grpo" / "metrics.jsonl"
    )
    assert grpo_args["trainer.total_training_steps"] == "7"
    assert grpo_args["trainer.test_freq"] == "5"
    assert grpo_args["data.seed"] == grpo_args["actor_rollout_ref.rollout.seed"] == "3"
    assert grpo_args["reward.custom_reward_function.path"] == "pkg://verl_tor.demo.task"
    # A mini-batch is one micro-batch: 8 prompts x 8 responses, 2 optimizer updates per step of 16 prompts.
    assert grpo_args["actor_rollout_ref.actor.ppo_mini_batch_size"] == str(settings.mini_batch_prompts)
    assert grpo_args["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"] == str(
        settings.mini_batch_prompts * settings.responses_per_prompt
    )
    # Reproducibility: seeded sampling in the rollout, veRL's replay buffer replaced by the canonical-order one.
    assert grpo_args["+actor_rollout_ref.rollout.engine_kwargs.hf.seeded_sampling"] == "true"
    assert grpo_args["trainer.v1.sampler.custom_sampler.path"] == "pkg://verl_tor.demo.sampler"
    assert "file" in grpo_args["trainer.logger"]
    # The paper's GRPO KL loss against the warm-started model, no entropy bonus (it is not weighted by ToR).
    assert grpo_args["actor_rollout_ref.actor.use_kl_loss"] == "True"
    assert grpo_args["actor_rollout_ref.actor.kl_loss_coef"] == "0.01"
    assert grpo_args["actor_rollout_ref.actor.kl_loss_type"] == "low_var_kl"
    assert float(grpo_args["actor_rollout_ref.actor.entropy_coeff"]) == 0.0
    assert not any(key.startswith("tor.") for key in tor_args)


def _recipe_tor_overrides(name: str) -> list[str]:
    """The ``tor.*=`` arguments of a recipe script (its own, after the shared GRPO and ToR arrays)."""
    import re

    path = os.path.join(os.path.dirname(TOR_CONFIG_DIR), os.pardir, "recipes", name)
    with open(path, encoding="utf-8") as f:
        return re.findall(r"\btor\.[a-z_.]+=[^\s\"]+", f.read())


def test_ablation_arms_are_the_recipes_settings_and_the_inspector_is_for_tor_arms(tmp_path):
    """Reasoning-only and perception-only arms set the same ``tor.*`` keys as the motivation recipes."""
    recipes = {
        REASONING_ONLY: "qwen2_5_vl_7b_geo3k_grpo_reasoning_only.sh",
        PERCEPTION_ONLY: "qwen2_5_vl_7b_geo3k_grpo_perception_only.sh",
    }
    for arm, recipe in recipes.items():
        assert list(arm.tor) == _recipe_tor_overrides(recipe)
        command = main_ppo_command(arm, DemoSettings(), "M", "D", str(tmp_path))
        assert command[-len(arm.tor) :] == list(arm.tor) and "tor_trainer" in command
    settings = DemoSettings(prompts_per_step=3, responses_per_prompt=5)
    inspected = _overrides(main_ppo_command(TOR, settings, "M", "D", str(tmp_path), inspect=True))
    assert inspected["tor.inspect.samples_per_step"] == "15" and inspected["tor.inspect.dir"] == str(tmp_path)
    with pytest.raises(ValueError):
        main_ppo_command(GRPO, settings, "M", "D", str(tmp_path), inspect=True)


def test_smoke_settings_and_training_rows():
    smoke = DemoSettings.smoke()
    assert smoke.steps == 2 and smoke.warm_start_steps < DemoSettings().warm_start_steps
    assert DemoSettings(steps=5).train_rows == 5 * DemoSettings().prompts_per_step


def test_command_line_sets_steps_and_seed_over_the_defaults_or_smoke(tmp_path):
    settings, out_dir = parse_args(["--steps", "12", "--seed", "4", "--out", str(tmp_path)])
    assert settings == DemoSettings(steps=12, seed=4) and out_dir == str(tmp_path)
    smoke, _ = parse_args(["--smoke", "--seed", "2"])
    assert smoke == DemoSettings(**{**vars(DemoSettings.smoke()), "seed": 2})
    assert parse_args([])[0] == DemoSettings()
    with pytest.raises(SystemExit):
        parse_args(["--steps", "0"])


def test_command_line_picks_the_tiny_models_family(tmp_path):
    settings, _ = parse_args(["--family", "qwen3_5", "--smoke"])
    assert settings == DemoSettings(**{**vars(DemoSettings.smoke()), "family": "qwen3_5"})
    assert "tiny Qwen3.5 hidden 128, 4 layers" in settings.describe()  # the family's own layer count
    assert "tiny Qwen2.5-VL hidden 128, 2 layers" in DemoSettings().describe()
    with pytest.raises(SystemExit):
        parse_args(["--family", "llava"])


def picture_colour(png: bytes) -> str:
    """The task colour nearest to the picture's mean pixel (the jitter is small against the colour gaps)."""
    import io

    import numpy as np
    from PIL import Image

    mean = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float).reshape(-1, 3).mean(0)
    return min(COLOURS, key=lambda name: float(((np.array(COLOURS[name]) - mean) ** 2).sum()))


def test_sft_rows_teach_the_lookup_and_the_pick_on_colours_drawn_independently_of_the_picture():
    rows = sft_rows(300, seed=0)
    assert sft_rows(300, seed=0)[0]["messages"] == rows[0]["messages"]
    answers = [row["messages"][-1]["content"].split() for row in rows]
    assert all(row["messages"][-1]["role"] == "assistant" for row in rows)
    with_image = [row for row in rows if row["images"]]
    assert all(row["messages"][0]["content"] == CONTENT and len(row["images"]) == 1 for row in with_image)
    # The lookup and the rule always hold: the number is the colour's in the table, the pick another table number.
    assert all(int(number) == WRITTEN_TABLE[colour] != int(pick) <= 4 for colour, number, pick in answers)
    # Picks are spread over the right ones (after green's 2: 1, 3 and 4), so the pick token is genuinely uncertain.
    assert {pick for colour, _, pick in answers if colour == "green"} == {"1", "3", "4"}
    # A quarter of the prompts come without their picture (so that removing it is no change of format).
    text_only = [row for row in rows if not row["images"]]
    assert 50 <= len(text_only) <= 100
    assert all(row["messages"][0]["content"] == CONTENT.replace("<image>", "") for row in text_only)
    # Seeing is not taught: the colour matches the picture about 1/4 of the time (~56 of ~225 expected, sd 6.5).
    matches = sum(
        row["messages"][-1]["content"].split()[0] == picture_colour(row["images"][0]["bytes"]) for row in with_image
    )
    assert 30 <= matches <= 82


def test_sft_overrides_train_in_fp32_and_save_only_the_hf_model():
    args = _overrides(sft_overrides("M", "T", "C", steps=5, batch_size=4, lr=1e-3, seed=1))
    assert args["engine.strategy"] == "fsdp2"
    assert "param_dtype:fp32" in args["+engine.mixed_precision"]
    assert args["checkpoint.save_contents"] == "[hf_model]"
    assert args["trainer.total_training_steps"] == "5"
    assert args["data.micro_batch_size_per_gpu"] == args["data.train_batch_size"] == "4"


def test_task_vocabulary_covers_the_prompt_and_keeps_answer_words_single_tokens():
    from verl_tor.demo.task import PROMPT_TEXT, TASK_TEXT, TASK_WORDS
    from verl_tor.testing.tiny_model import build_tokenizer

    tokenizer = build_tokenizer(TASK_WORDS, TASK_TEXT)
    assert len(tokenizer) < 200
    # A right answer is one token per word: colour, number, pick.
    for answer in ("green 2 3", "yellow 4 4", "red 1 1"):
        assert [tokenizer.decode([i]).strip() for i in tokenizer.encode(answer)] == answer.split()
    messages = [{"role": "user", "content": [{"type": "text", "text": PROMPT_TEXT}, {"type": "image"}]}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # No character of the prompt falls outside the alphabet (it would be dropped silently).
    assert tokenizer.decode(tokenizer.encode(text)) == text


# ------------------------------------------------------------------------------------------------ the task


def test_task_rows_show_the_ground_truth_colour_in_flat_blocks_and_share_one_prompt(tmp_path):
    import io

    import numpy as np
    import pandas as pd
    from PIL import Image

    from verl_tor.demo.task import DATA_SOURCE, JITTER_BLOCK, PROMPT_TEXT, write_dataset

    train, val = write_dataset(str(tmp_path), train=60, val=12, seed=5)
    rows, held_out = pd.read_parquet(train), pd.read_parquet(val)
    assert len(rows) == 60 and len(held_out) == 12
    assert set(rows["extra_info"].map(lambda info: info["index"])) == set(range(60))
    for _, row in pd.concat([rows, held_out]).iterrows():
        colour = row["reward_model"]["ground_truth"]
        assert row["data_source"] == DATA_SOURCE and row["extra_info"]["colour"] == colour
        assert row["extra_info"]["number"] == WRITTEN_TABLE[colour]
        assert row["prompt"][0]["content"] == CONTENT == PROMPT_TEXT + "<image>"
        png = row["images"][0]["bytes"]
        assert picture_colour(png) == colour
        pixels = np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)
        blocks = pixels.reshape(pixels.shape[0] // JITTER_BLOCK, JITTER_BLOCK, -1, JITTER_BLOCK, 3)
        assert (blocks == blocks[:, :1, :, :1]).all()  # every block one colour
        assert len({tuple(blocks[i, 0, j, 0]) for i in range(2) for j in range(2)}) > 1  # blocks differ
    # All four colours are drawn, and a seed fixes the whole dataset.
    assert set(rows["reward_model"].map(lambda truth: truth["ground_truth"])) == set(WRITTEN_TABLE)
    again, _ = write_dataset(str(tmp_path / "again"), train=60, val=12, seed=5)
    pd.testing.assert_frame_equal(pd.read_parquet(again), rows)


def _right(colour: str, number: int, pick: int, truth: str) -> bool:
    """The task's rule written out: the picture's colour, its number in the table, another number of the table."""
    return colour == truth and number == WRITTEN_TABLE[truth] and pick in set(WRITTEN_TABLE.values()) - {number}


def test_reward_is_one_exactly_for_right_answers_of_every_colour_number_and_pick():
    from verl_tor.demo.task import compute_score

    for truth in WRITTEN_TABLE:
        for colour in WRITTEN_TABLE:
            for number in range(0, 6):
                for pick in range(0, 6):
                    result = compute_score("s", f"{colour} {number} {pick}", truth)
                    assert result["score"] == result["acc"] == float(_right(colour, number, pick, truth))
                    assert result["colour"] == float(colour == truth)
                    # The lookup is judged on the colour the response named, the pick on its number.
                    assert result["number"] == float(number == WRITTEN_TABLE[colour])
                    assert result["pick"] == float(1 <= number <= 4 and 1 <= pick <= 4 and pick != number)


@pytest.mark.parametrize(
    ("response", "parts"),
    [
        (" green 2 3", {"colour": 1, "number": 1, "pick": 1, "format": 1}),
        ("green 2 3 4", {"colour": 1, "number": 1, "pick": 1, "format": 0}),
        ("green 2 5", {"colour": 1, "number": 1, "pick": 0, "format": 1}),  # 5 is no table number
        ("green 2 2", {"colour": 1, "number": 1, "pick": 0, "format": 1}),  # not another number
        ("green 2", {"colour": 1, "number": 1, "pick": 0, "format": 0}),
        ("green two 3", {"colour": 1, "number": 0, "pick": 0, "format": 1}),
        ("2 green 3", {"colour": 0, "number": 0, "pick": 0, "format": 1}),
        ("", {"colour": 0, "number": 0, "pick": 0, "format": 0}),
    ],
)
def test_reward_parts_of_malformed_answers(response, parts):
    from verl_tor.demo.task import compute_score

    result = compute_score("s", response, "green")
    assert {key: result[key] for key in parts} == parts
    assert result["score"] == float(all(parts.values()))


@pytest.mark.parametrize(
    ("texts", "labels", "uncertain"),
    [
        (["green", " 2", " 3", "<|im_end|>"], "colour number pick other", [0, 0, 1, 0]),
        (["yellow", " 4", " 4", "<|im_end|>"], "colour number pick other", [0, 0, 1, 0]),  # a wrong pick, a choice
        (["blue", " 3"], "colour number", [0, 0]),
        (["red", " 1", " 5"], "colour number other", [0, 0, 0]),  # 5 is no table number
        ([" 3", "red", "red", " 1", " 1", " 2"], "other colour other number pick other", [0, 0, 0, 0, 1, 0]),
        (["the", " 4"], "other other", [0, 0]),
    ],
)
def test_token_labels_mark_the_colour_as_image_dependent_and_multi_answer_picks_as_uncertain(texts, labels, uncertain):
    from verl_tor.demo.task import token_labels

    assert token_labels(texts) == (labels.split(), [bool(u) for u in uncertain])


def test_every_right_answer_has_one_token_per_label_and_an_uncertain_pick():
    from verl_tor.demo.task import PICK, TASK_TEXT, TASK_WORDS, token_labels
    from verl_tor.testing.tiny_model import build_tokenizer

    tokenizer = build_tokenizer(TASK_WORDS, TASK_TEXT)
    for colour, number in TABLE.items():
        for pick in set(range(1, 5)) - {number}:
            ids = tokenizer.encode(f"{colour} {number} {pick}") + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
            labels, uncertain = token_labels([tokenizer.decode([i]) for i in ids])
            assert labels == ["colour", "number", "pick", "other"]
            # Three right picks after any number: always a genuine choice.
            assert uncertain == [False, False, True, False]
            assert labels.index(PICK) == 2


# ------------------------------------------------------------------------------------------ what ToR picked


def _sample(texts, sets, valid=None):
    return {"tokens": {"text": texts, "set": sets, "valid": valid or [True] * len(texts)}}


def test_mechanism_metrics_of_a_hand_made_batch():
    from verl_tor.demo.mechanism import step_mechanism

    end = "<|im_end|>"
    samples = [
        # colour in T_p, pick (uncertain) in T_r
        _sample(["green", " 2", " 3", end], ["perception", "none", "reasoning", "none"]),
        # colour in both sets, number in T_p, pick in T_r; the last token is padding
        _sample(
            ["yellow", " 4", " 1", end, "red"],
            ["both", "perception", "reasoning", "none", "perception"],
            [True, True, True, True, False],
        ),
        # a malformed answer: its stray colour word is no perception token; its first colour word was missed; its
        # number (certain) is in T_r
        _sample(["red", " 1", "blue"], ["none", "reasoning", "perception"]),
    ]
    result = step_mechanism(samples)
    assert math.isnan(result.pop("perception_auc"))  # no scores recorded
    # Valid tokens: 4 + 4 + 3 = 11; colour words (image): green, yellow, red = 3; uncertain: the two picks.
    # T_p = {green, yellow, " 4", blue} (4), of which image: green, yellow. T_r = {" 3", yellow, " 1", " 1"} (4),
    # of which uncertain: the picks " 3" and " 1"; colour: yellow.
    assert result == {
        "perception_precision": 2 / 4,
        "perception_recall": 2 / 3,
        "reasoning_uncertain_share": 2 / 4,
        "reasoning_colour_share": 1 / 4,
        "image_share": 3 / 11,
        "uncertain_share": 2 / 11,
        "tokens": 11.0,
        "samples": 3.0,
    }
    empty = step_mechanism([_sample(["green"], ["none"])])
    assert math.isnan(empty["perception_precision"]) and math.isnan(empty["reasoning_uncertain_share"])
    assert empty["perception_recall"] == 0.0


def test_mechanism_by_step_reads_the_inspector_file(tmp_path):
    from verl_tor.demo.mechanism import mechanism_by_step

    record = {
        "kind": "step",
        "n_samples": 8,
        "samples": [_sample(["red", " 1", " 1"], ["perception", "none", "reasoning"])],
    }
    path = tmp_path / "tor_inspect.jsonl"
    path.write_text("".join(json.dumps({**record, "step": step}) + "\n" for step in (2, 1)))
    result = mechanism_by_step(str(path))
    assert sorted(result) == [1, 2]
    assert result[1]["perception_precision"] == 1.0 and result[1]["reasoning_uncertain_share"] == 1.0
    assert result[1]["samples"] == 1.0 and result[1]["batch_samples"] == 8.0


def test_each_methods_perception_tokens_and_the_auc_against_a_pairwise_count():
    """T_p for set methods, w > 1 for PGPO's soft weights, nothing for methods without a perception score; the AUC
    against counting every (image token, other token) pair by hand."""
    from verl_tor.demo.mechanism import UPWEIGHTED_RULE, mann_whitney_auc, perception_rule, step_mechanism
    from verl_tor.methods.config import TokenCreditConfig

    def header(method: str, **overrides) -> dict:
        return TokenCreditConfig.from_mapping({"method": method, **overrides}).components()

    assert perception_rule(header("tor")) == "set" == perception_rule(header("vppo"))
    assert perception_rule(header("pgpo")) == UPWEIGHTED_RULE
    assert perception_rule(header("grpo")) is None is perception_rule(header("entropy_top20"))
    # Reasoning only (γ_p = γ_o): the trainer skips the image-removed pass, so there is no perception signal.
    assert perception_rule(header("tor", perception_weight=0.0, other_weight=0.0)) is None
    assert perception_rule({"perception_quantile": 0.3}) == "set"  # a v1 header: ToR's sets

    end = "<|im_end|>"

    def scored(texts, w, scores, valid):
        return {"has_image": True, "tokens": {"text": texts, "set": ["none"] * 4, "valid": valid, "w": w, "S": scores}}

    samples = [
        scored(["green", " 2", " 3", end], [2.0, 1.0, 0.5, 0.5], [0.7, 0.1, 0.7, 0.0], [True] * 4),
        scored(["blue", " 3", " 1", end], [0.9, 1.5, 1.1, 9.0], [0.2, 0.3, 0.05, 5.0], [True] * 3 + [False]),
    ]
    pgpo = step_mechanism(samples, UPWEIGHTED_RULE)
    # Upweighted valid tokens: green, " 3" (second response), " 1"; image tokens: green, blue (the padding 9.0 is
    # not a token).
    assert pgpo["perception_precision"] == 1 / 3 and pgpo["perception_recall"] == 1 / 2
    image = [0.7, 0.2]
    other = [0.1, 0.7, 0.0, 0.3, 0.05]
    pairs = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(image, other)]
    assert pgpo["perception_auc"] == pytest.approx(sum(pairs) / len(pairs))
    none = step_mechanism(samples, None)
    assert math.isnan(none["perception_precision"]) and math.isnan(none["perception_auc"])
    assert none["image_share"] == 2 / 7
    rng = __import__("numpy").random.default_rng(0)
    positive, negative = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 40).astype(float)
    pairs = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(positive, negative)]
    assert mann_whitney_auc(positive, negative) == pytest.approx(sum(pairs) / len(pairs))
    assert math.isnan(mann_whitney_auc(positive, positive[:0]))


def test_mechanism_by_step_applies_the_rule_of_the_run_header(tmp_path):
    from verl_tor.demo.mechanism import mechanism_by_step
    from verl_tor.methods.config import TokenCreditConfig

    pgpo = TokenCreditConfig.from_mapping({"method": "pgpo"}).components()
    sample = {"tokens": {"text": ["red", " 1"], "set": ["none", "none"], "valid": [True, True], "w": [1.5, 0.5]}}
    lines = [{"kind": "run", "tor": pgpo}, {"kind": "step", "step": 1, "n_samples": 1, "samples": [sample]}]
    path = tmp_path / "tor_inspect.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert mechanism_by_step(str(path))[1]["perception_precision"] == 1.0  # "red" is weighted above 1


# --------------------------------------------------------------------------------------- canonical batch order


def test_canonical_order_is_the_same_for_any_arrival_order():
    import numpy as np

    from verl_tor.demo.sampler import canonical_order

    rng = np.random.default_rng(0)
    batch = [
        (int(rng.integers(4)), [int(t) for t in rng.integers(0, 3, size=int(rng.integers(1, 4)))]) for _ in range(40)
    ]
    expected = sorted(batch, key=lambda item: (str(item[0]), item[1]))
    for _ in range(5):
        arrived = [batch[i] for i in rng.permutation(len(batch))]
        order = canonical_order([index for index, _ in arrived], [response for _, response in arrived])
        assert sorted(order) == list(range(len(batch)))
        assert [arrived[i] for i in order] == expected


@pytest.mark.parametrize(
    ("mode", "filter_groups", "refused"),
    [
        ("sync", False, None),
        ("colocate_async", False, "trainer.v1.trainer_mode"),
        ("sync", True, "algorithm.filter_groups.enable"),
    ],
)
def test_canonical_buffer_refuses_what_verl_would_not_give_it(mode, filter_groups, refused):
    """Built by veRL's own ``_build_replay_buffer``: async modes and DAPO's dynamic sampling stop at start-up (veRL
    would silently use the sync buffer without filtering), plain sync runs get the canonical buffer."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    from verl_tor.demo.sampler import CanonicalReplayBuffer

    class Trainer:
        trainer_mode = mode
        config = OmegaConf.create(
            {
                "trainer": {
                    "v1": {
                        "sampler": {
                            "custom_sampler": {"path": "pkg://verl_tor.demo.sampler", "name": "CanonicalReplayBuffer"},
                            "max_off_policy_threshold": None,
                            "max_off_policy_strategy": "drop",
                            "sampler_kwargs": {},
                        }
                    }
                },
                "algorithm": {"filter_groups": {"enable": filter_groups, "metric": "acc"}},
            }
        )

        def _add_prompts_to_generate(self, *args, **kwargs):
            raise AssertionError("not called at construction")

    build = PPOTrainer._build_replay_buffer
    if refused is None:
        assert isinstance(build(Trainer()), CanonicalReplayBuffer)
    else:
        with pytest.raises(ValueError, match=refused):
            build(Trainer())


# ------------------------------------------------------------------------------------------------ the study


def _study_records(tmp_path, accuracy, seconds):
    entries = run_entries([0.5] * 20, [9.0] + [seconds] * 19)
    entries += [(step, {VAL: value}) for step, value in zip((0, 10, 20), accuracy, strict=True)]
    return metrics.read_metrics(write_jsonl(tmp_path / f"{len(os.listdir(tmp_path))}.jsonl", entries))


def test_study_table_has_mean_sd_over_seeds_threshold_time_ratios_and_perception_blocks(tmp_path):
    from verl_tor.demo.study import arm_result, plot_study, study_markdown

    grpo = {
        0: arm_result(_study_records(tmp_path, (0.2, 0.9, 0.8), 4.0), 0.8),
        1: arm_result(_study_records(tmp_path, (0.1, 0.5, 0.6), 5.0), 0.8),
    }
    picked = {step: {"perception_precision": step / 10, "perception_recall": 0.5, "perception_auc": 0.7}
              for step in range(1, 21)}  # fmt: skip
    tor = {
        0: arm_result(_study_records(tmp_path, (0.2, 0.7, 0.85), 6.0), 0.8, picked),
        1: arm_result(_study_records(tmp_path, (0.1, 0.3, 0.4), 5.0), 0.8, picked),
    }
    assert grpo[0].steps_to_threshold == 10 and grpo[1].steps_to_threshold is None and tor[0].steps_to_threshold == 20
    assert grpo[0].final_accuracy == 0.8 and grpo[0].seconds_per_step == 4.0 and grpo[0].accuracy[10] == 0.9
    text = study_markdown({GRPO.name: grpo, TOR.name: tor}, threshold=0.8, notes=["n"], block=10)
    # GRPO: finals 0.8, 0.6 -> mean 0.70, sd 0.14; ToR: 0.85, 0.4 -> 0.62 ± 0.32; time ratios 1.5 and 1.0;
    # precision steps 1-10 mean 0.55, steps 11-20 mean 1.55.
    assert "| GRPO | 0.70 ± 0.14 | 0.80, 0.60 | 1/2 | 4.50 ± 0.71 | 1.00 ± 0.00 | — | — | — |" in text
    assert (
        "| GRPO+ToR | 0.62 ± 0.32 | 0.85, 0.40 | 1/2 | 5.50 ± 0.71 | 1.25 ± 0.35 | 0.55 → 1.55 | 0.50 → 0.50 |" in text
    )
    # Two seeds: no paired result can be significant, and the table says so.
    assert f"| GRPO+ToR | {((0.85 - 0.8) + (0.4 - 0.6)) / 2:+.2f} |" in text and "2 seeds cannot give p < 0.05" in text
    with open(plot_study({GRPO.name: grpo, TOR.name: tor}, str(tmp_path / "s.png"), "t"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_study_pairs_every_arm_with_grpo_by_seed_and_says_what_its_seeds_can_detect(tmp_path):
    """Difference, exact sign-flip p (all 2**6 sign patterns enumerated here) and the normal-approximation power
    figures, written out by hand."""
    from verl_tor.demo.study import MIN_TESTABLE_SEEDS, arm_result, paired_rows, study_markdown

    baseline = [0.5, 0.6, 0.4, 0.7, 0.5, 0.6]
    better = [0.8, 0.7, 0.6, 0.9, 0.6, 0.9]
    results = {
        GRPO.name: {s: arm_result(_study_records(tmp_path, (0.2, 0.3, a), 4.0), 0.8) for s, a in enumerate(baseline)},
        TOR.name: {s: arm_result(_study_records(tmp_path, (0.2, 0.3, b), 4.0), 0.8) for s, a, b in
                   zip(range(6), baseline, better, strict=True)},
    }  # fmt: skip
    (row,) = paired_rows(results)
    d = [b - a for a, b in zip(baseline, better, strict=True)]
    observed = abs(sum(d))
    extreme = sum(abs(sum(x * s for x, s in zip(d, signs, strict=True))) >= observed - 1e-12
                  for signs in itertools.product((1, -1), repeat=6))  # fmt: skip
    assert row.p_value == pytest.approx(extreme / 64) and row.p_value < 0.05
    assert row.difference == pytest.approx(statistics.fmean(d)) and row.seeds == 6 == MIN_TESTABLE_SEEDS
    assert row.sd == pytest.approx(statistics.stdev(d))
    z = 1.959964 + 0.841621  # z_0.975 + z_0.8
    assert row.detectable == pytest.approx(z * statistics.stdev(d) / math.sqrt(6), rel=1e-5)
    assert row.seeds_needed == pytest.approx(max(6, (z * statistics.stdev(d) / statistics.fmean(d)) ** 2), rel=1e-5)
    text = study_markdown(results, 0.8)
    assert "differs from the baseline (p = 0.031 < 0.05)" in text and "no p can be below 0.0312" in text


def test_an_interrupted_study_reads_back_finished_arms_and_reruns_a_partial_one(tmp_path, monkeypatch):
    """Training is replaced by writing the files veRL and the inspector would write (the phases are tested by
    ``make smoke`` and the e2e tests); what is checked is which arms run again."""
    from verl_tor.demo import run, study
    from verl_tor.inspect import INSPECT_FILE

    settings = DemoSettings(steps=3, val_every=5)
    calls = {"prepare": 0, "arms": []}

    def finished_metrics(run_dir):
        os.makedirs(run_dir, exist_ok=True)
        write_jsonl(os.path.join(run_dir, "metrics.jsonl"), run_entries([0.5] * 3, [4.0] * 3, val=(0.25, 0.5)))

    def prepare(seed_settings, seed_dir, env, phases):
        calls["prepare"] += 1
        return "model", "data"

    def run_arm(arm, seed_settings, model, data, seed_dir, env, inspect=False):
        run_dir = os.path.join(seed_dir, arm.directory)
        assert not os.path.exists(run_dir), "a partly run arm starts from an empty folder"
        calls["arms"].append(arm.name)
        finished_metrics(run_dir)
        if inspect:
            with open(os.path.join(run_dir, INSPECT_FILE), "w", encoding="utf-8") as f:
                f.write(json.dumps({"kind": "step", "step": 1, "n_samples": 1, "samples": []}) + "\n")
        return metrics.read_metrics(os.path.join(run_dir, "metrics.jsonl")), run.PhaseTime(1.0, math.nan)

    monkeypatch.setattr(study, "prepare", prepare)
    monkeypatch.setattr(study, "run_arm", run_arm)
    seed_dir = tmp_path / "seed_0"
    finished_metrics(str(seed_dir / GRPO.directory))  # finished earlier
    partial = run_entries([0.5] * 2, [4.0] * 2)  # stopped after two of three steps
    os.makedirs(seed_dir / TOR.directory)
    write_jsonl(seed_dir / TOR.directory / "metrics.jsonl", partial)
    assert study.finished_arm(str(seed_dir / GRPO.directory), 3, inspected=False) is not None
    assert study.finished_arm(str(seed_dir / GRPO.directory), 4, inspected=False) is None  # other --steps
    assert study.finished_arm(str(seed_dir / TOR.directory), 3, inspected=True) is None

    study.run_study(settings, [0], str(tmp_path), (GRPO, TOR))
    assert calls == {"prepare": 1, "arms": [TOR.name]}
    paths = study.run_study(settings, [0], str(tmp_path), (GRPO, TOR))
    assert calls == {"prepare": 1, "arms": [TOR.name]}  # nothing left to run
    with open(paths["table"], encoding="utf-8") as f:
        table = f.read()
    # The arm run by the first call kept its wall time for the second; the one finished before it had none.
    assert "2 arm runs read back from an earlier run" in table and f"{TOR.name} 1" in table
    assert f"{GRPO.name} " not in table.split("per run", 1)[1].split("\n", 1)[0]


def test_power_figures_of_paired_units():
    from verl_tor.eval.stats import detectable_difference, smallest_sign_flip_p, units_for_power

    assert [smallest_sign_flip_p(n) for n in (1, 3, 5, 6)] == [1.0, 0.25, 0.0625, 0.03125]
    # ((1.96 + 0.84) * 0.2 / 0.1)^2 = 31.4 seeds to detect 0.1 with an sd of differences of 0.2.
    assert units_for_power(0.2, 0.1) == pytest.approx(31.40, abs=0.01)
    assert units_for_power(0.01, 0.5) == 6.0  # never fewer than the sign-flip test needs
    assert math.isinf(units_for_power(0.2, 0.0)) and math.isinf(detectable_difference(0.2, 5))
    assert detectable_difference(0.2, 32) == pytest.approx(0.2 * 2.801585 / math.sqrt(32), rel=1e-6)


def test_study_arms_are_the_registered_methods_each_one_override_away_from_tor(tmp_path):
    from verl_tor.demo.run import method_arm
    from verl_tor.demo.study import main
    from verl_tor.methods.registry import METHODS

    assert list(STUDY_ARMS) == [*METHODS, "reasoning_only", "perception_only"]
    assert STUDY_ARMS["grpo"] is GRPO and STUDY_ARMS["tor"] is TOR
    settings = DemoSettings()
    tor_args = _overrides(main_ppo_command(TOR, settings, "M", "D", str(tmp_path)))
    for name in ("vppo", "pgpo", "entropy_top20"):
        command = main_ppo_command(STUDY_ARMS[name], settings, "M", "D", str(tmp_path))
        assert "tor_trainer" in command
        args = _overrides(command)
        differing = {key for key in args.keys() | tor_args.keys() if args.get(key) != tor_args.get(key)}
        assert differing == {"tor.method", "trainer.experiment_name"} and args["tor.method"] == name
    with pytest.raises(ValueError, match="vepo"):
        method_arm("vepo")
    for bad in ("tor,grpo", "grpo,vepo", "grpo,tor,tor"):
        with pytest.raises(SystemExit):
            main(["--methods", bad, "--out", str(tmp_path)])


def test_compare_reports_training_metrics_that_differ_and_ignores_the_machines(tmp_path):
    from verl_tor.demo.compare import differences, report

    first = {1: {metrics.REWARD: 0.5, "actor/pg_loss": 0.1, metrics.STEP_TIME: 3.0}, 2: {metrics.REWARD: 0.7}}
    second = {1: {metrics.REWARD: 0.5, "actor/pg_loss": 0.1, metrics.STEP_TIME: 4.0}, 2: {metrics.REWARD: 0.6}}
    found = differences(first, second)
    assert found == {metrics.REWARD: (pytest.approx(0.1), 2), "actor/pg_loss": (0.0, None)}
    assert differences({1: {"x": math.nan}}, {1: {"x": math.nan}}) == {"x": (0.0, None)}
    assert differences({1: {"x": math.nan}}, {1: {"x": 1.0}}) == {"x": (math.inf, 1)}
    for run, records in (("a", first), ("b", second)):
        os.makedirs(tmp_path / run / "grpo")
        write_jsonl(tmp_path / run / "grpo" / "metrics.jsonl", sorted(records.items()))
    text = report(str(tmp_path / "a"), str(tmp_path / "b"))
    assert "grpo: 2 metrics compared, 1 identical at every step" in text
    assert "first step with a difference: 2" in text and f"{metrics.REWARD}: largest difference 0.1" in text


def test_warm_start_dataset_collates_batches_that_start_with_a_text_only_row(tmp_path, tiny_model_dir):
    """veRL's SFT collator takes a batch's keys from its first row: with a text-only row first, the pictures of the
    others would be dropped; MixedSFTDataset's rows all carry multi_modal_inputs (None without a picture)."""
    from omegaconf import OmegaConf
    from transformers import AutoProcessor
    from verl.utils.dataset.dataset_utils import DatasetPadMode, SFTTensorCollator

    from verl_tor.demo.warm_start import MixedSFTDataset, sft_rows, write_sft_dataset

    path = write_sft_dataset(str(tmp_path), 12, seed=0)
    rows = sft_rows(12, seed=0)
    text_only = [i for i, row in enumerate(rows) if not row["images"]]
    with_image = [i for i, row in enumerate(rows) if row["images"]]
    assert text_only and with_image
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    config = OmegaConf.create({"max_length": 256, "pad_mode": "no_padding", "truncation": "error"})
    dataset = MixedSFTDataset(parquet_files=path, tokenizer=processor.tokenizer, config=config, processor=processor)
    batch = SFTTensorCollator(DatasetPadMode.NO_PADDING)([dataset[i] for i in (text_only[0], *with_image[:2])])
    inputs = [item.data if hasattr(item, "data") else item for item in batch["multi_modal_inputs"]]
    assert inputs[0] is None
    assert all(item["pixel_values"].shape[0] > 0 for item in inputs[1:])
