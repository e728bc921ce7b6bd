"""The CPU demo's own logic: metrics parsing, blocks, step times, summary, PNG, command lines, SFT data.

No training runs here; ``make smoke`` runs the whole pipeline.
"""

from __future__ import annotations

import json
import math
import os

import pytest

from verl_tor.demo import metrics
from verl_tor.demo.run import GRPO, TOR, TOR_CONFIG_DIR, DemoSettings, main_ppo_command, parse_args
from verl_tor.demo.warm_start import sft_overrides, sft_rows
from verl_tor.testing.synthetic_data import COLOURS

VAL = "val-core/verl_tor/colour/acc/mean@1"


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


def test_summary_has_blocks_accuracy_and_the_time_ratio(tmp_path):
    grpo = metrics.read_metrics(write_jsonl(tmp_path / "g.jsonl", run_entries([0.2] * 4, [9, 2, 2, 2], (0.1, 0.5))))
    tor = metrics.read_metrics(
        write_jsonl(tmp_path / "t.jsonl", run_entries([0.4] * 4, [9, 3, 3, 3], (0.1, 0.7), tor=True))
    )
    text = metrics.summary_markdown({GRPO: grpo, TOR: tor}, block=2, notes=["a note"])
    assert "- a note" in text
    assert "| 1–2 | 3–4 | final | peak |" in text
    assert "| GRPO+ToR | 0.40 | 0.40 | 0.40 | 0.40 |" in text
    assert "step 0: 0.10, step 4: 0.70" in text
    assert "| GRPO | 4 | 2.00 | 1.00 |" in text
    assert "| GRPO+ToR | 4 | 3.00 | 1.50 |" in text
    assert "GRPO+ToR: reasoning_fraction 0.30, perception_fraction 0.30, mean_weight 0.40" in text


def test_selected_fraction_is_the_union_of_both_sets():
    records = {
        1: {"tor/reasoning_fraction": 0.3, "tor/perception_fraction": 0.3, "tor/overlap_fraction": 0.2},
        2: {"tor/reasoning_fraction": 0.3},
    }
    steps, values = metrics.selected_fraction(records)
    assert steps == [1] and values == [pytest.approx(0.4)]


def test_plot_writes_a_png_with_and_without_tor_metrics(tmp_path):
    grpo = metrics.read_metrics(write_jsonl(tmp_path / "g.jsonl", run_entries([0.2, 0.3], [2, 2], (0.1, 0.5))))
    tor = metrics.read_metrics(write_jsonl(tmp_path / "t.jsonl", run_entries([0.2, 0.4], [3, 3], tor=True)))
    for arms, name in (({GRPO: grpo, TOR: tor}, "both.png"), ({GRPO: grpo}, "grpo.png")):
        path = metrics.plot_curves(arms, str(tmp_path / name))
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
    # 4 prompts x 8 responses per mini-batch (one micro-batch), so 4 optimizer updates per step of 16 prompts.
    assert grpo_args["actor_rollout_ref.actor.ppo_mini_batch_size"] == "4"
    assert grpo_args["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"] == "32"
    assert grpo_args["actor_rollout_ref.rollout.agent.num_workers"] == "2"
    assert "file" in grpo_args["trainer.logger"]


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


def picture_colour(png: bytes) -> str:
    """The task colour nearest to the picture's mean pixel (the jitter is small against the colour gaps)."""
    import io

    import numpy as np
    from PIL import Image

    mean = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float).reshape(-1, 3).mean(0)
    return min(COLOURS, key=lambda name: float(((np.array(COLOURS[name]) - mean) ** 2).sum()))


def test_sft_rows_answer_one_colour_word_drawn_independently_of_the_picture():
    rows = sft_rows(300, seed=0)
    assert sft_rows(300, seed=0)[0]["messages"] == rows[0]["messages"]
    answers = [row["messages"][-1] for row in rows]
    assert all(answer["role"] == "assistant" and answer["content"] in COLOURS for answer in answers)
    assert all(row["messages"][0]["content"].startswith("<image>") and len(row["images"]) == 1 for row in rows)
    # Format only: the label matches the picture about 1/6 of the time (50 of 300 expected, sd ~6.5).
    matches = sum(
        answer["content"] == picture_colour(row["images"][0]["bytes"])
        for answer, row in zip(answers, rows, strict=True)
    )
    assert 25 <= matches <= 80


def test_sft_overrides_train_in_fp32_and_save_only_the_hf_model():
    args = _overrides(sft_overrides("M", "T", "C", steps=5, batch_size=4, lr=1e-3, seed=1))
    assert args["engine.strategy"] == "fsdp2"
    assert "param_dtype:fp32" in args["+engine.mixed_precision"]
    assert args["checkpoint.save_contents"] == "[hf_model]"
    assert args["trainer.total_training_steps"] == "5"
    assert args["data.micro_batch_size_per_gpu"] == args["data.train_batch_size"] == "4"


def test_tor_positions_reports_every_response_position(tiny_model_dir):
    from verl_tor.demo.tor_positions import position_report

    report = position_report(tiny_model_dir, prompts=2, responses=2)
    assert report.startswith("2 prompts x 2 responses")
    assert "perception_fraction" in report
    assert "| 0 |" in report  # the first response token always exists


def test_task_vocabulary_covers_the_prompt_and_keeps_colours_single_tokens():
    from verl_tor.demo.run import TASK_TEXT, TASK_WORDS
    from verl_tor.testing.synthetic_data import QUESTION
    from verl_tor.testing.tiny_model import build_tokenizer

    tokenizer = build_tokenizer(TASK_WORDS, TASK_TEXT)
    assert len(tokenizer) < 150
    assert all(len(tokenizer.encode(colour)) == 1 for colour in COLOURS)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # No character of the prompt falls outside the alphabet (it would be dropped silently).
    assert tokenizer.decode(tokenizer.encode(text)) == text
