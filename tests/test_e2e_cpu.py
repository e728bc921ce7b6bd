"""veRL's real ``python -m verl.trainer.main_ppo`` (V1 trainer, Ray, TransferQueue) on CPU with the tiny model.

Each scenario is one subprocess running the honest command with :func:`verl_tor.testing.cpu_overrides` plus its
own overrides; metrics come from veRL's "file" logger. Add a scenario with a few lines::

    @pytest.mark.e2e
    def test_my_scenario(run_main_ppo, tmp_path):
        returncode, metrics, log = run_main_ppo(tmp_path, ["algorithm.adv_estimator=grpo", ...])
        assert returncode == 0, log[-5000:]

On a GPU machine without vLLM, ``VERL_PLATFORM=nvidia`` runs the same scenarios on the GPU.
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from browser_dom import chromium, dump_dom, needs_chromium, shown

from verl_tor.testing.cpu_overrides import cpu_env, cpu_overrides

RUN_TIMEOUT_S = 420
TRAIN_BATCH_SIZE = 4
RESPONSE_LENGTH = 4
REQUIRED_METRICS = ("actor/pg_loss", "critic/score/mean", "response_length/mean", "timing_s/gen", "timing_s/step")

RunMainPPO = Callable[..., tuple[int, list[dict], str]]


def _run_main_ppo(
    out_dir: Path,
    overrides: list[str],
    model_dir: str,
    data_dir: str,
    config_name: str | None = None,
    config_path: str | None = None,
) -> tuple[int, list[dict], str]:
    """Run main_ppo with the CPU overrides, then ``overrides``; returns (return code, logged metrics, log text).

    Each metrics entry is ``{"step": n, **metrics of step n}`` as veRL's file logger wrote it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path, log_path = out_dir / "metrics.jsonl", out_dir / "main_ppo.log"
    # A private Ray temp dir (short: Ray's socket paths are length-limited), removed afterwards.
    ray_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    command = [sys.executable, "-m", "verl.trainer.main_ppo"]
    if config_path is not None:
        command.append(f"--config-path={config_path}")
    if config_name is not None:
        command.append(f"--config-name={config_name}")
    command += cpu_overrides(model_dir, data_dir, str(out_dir), train_batch_size=TRAIN_BATCH_SIZE)
    command += ["trainer.logger=[console,file]", f"+ray_kwargs.ray_init._temp_dir={ray_dir}", *overrides]
    env = dict(os.environ)
    for name, value in cpu_env().items():
        env.setdefault(name, value)  # VERL_PLATFORM=nvidia (set by the caller) runs on a GPU instead
    env.update(VERL_FILE_LOGGER_PATH=str(metrics_path), RAY_DEDUP_LOGS="0")
    try:
        with open(log_path, "wb") as log:
            # Own session: on a timeout, its whole process group (driver and the Ray cluster it started) is ended.
            process = subprocess.Popen(
                command, cwd=out_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                returncode = process.wait(timeout=RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                returncode = process.wait()
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    metrics = []
    if metrics_path.exists():
        for line in metrics_path.read_text().splitlines():
            entry = json.loads(line)
            metrics.append({"step": entry["step"], **entry["data"]})
    return returncode, metrics, log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def run_main_ppo(tiny_model_dir, colour_data_dir) -> RunMainPPO:
    """``run_main_ppo(tmp_path, extra_overrides, config_name=None, config_path=None, data_dir=None, model_dir=None)``
    (default model: the tiny Qwen2.5-VL)."""

    def run(tmp_path, extra_overrides, config_name=None, config_path=None, data_dir=None, model_dir=None):
        model, data = model_dir or tiny_model_dir, data_dir or colour_data_dir
        return _run_main_ppo(Path(tmp_path), list(extra_overrides), model, data, config_name, config_path)

    return run


def _training_steps(metrics: list[dict]) -> list[dict]:
    return [entry for entry in metrics if "timing_s/step" in entry]


def _rollout_ground_truths(rollout_dir: Path, step: int) -> collections.Counter:
    rows = [json.loads(line) for line in (rollout_dir / f"{step}.jsonl").read_text().splitlines()]
    return collections.Counter(row["gts"] for row in rows)


def _dataset_ground_truths(data_dir: str, batch: int) -> collections.Counter:
    """Ground truths of the ``batch``-th (0-based) unshuffled training batch, once per rollout (n = 4)."""
    rows = pd.read_parquet(os.path.join(data_dir, "train.parquet"))
    batch_rows = rows.iloc[batch * TRAIN_BATCH_SIZE : (batch + 1) * TRAIN_BATCH_SIZE]
    return collections.Counter(
        {
            colour: 4 * count
            for colour, count in collections.Counter(row["ground_truth"] for row in batch_rows["reward_model"]).items()
        }
    )


@pytest.fixture(scope="module")
def grpo_run(run_main_ppo, tmp_path_factory):
    """Stock GRPO, 2 steps, checkpoint at step 2. Fixed-size images and responses that never stop early
    (``ignore_eos``) make every sequence equally long: the layout that needs our position-id patch."""
    out_dir = tmp_path_factory.mktemp("grpo")
    overrides = [
        "trainer.save_freq=2",
        "data.shuffle=false",
        "actor_rollout_ref.rollout.ignore_eos=true",
        f"trainer.rollout_data_dir={out_dir / 'rollouts'}",
    ]
    returncode, metrics, log = run_main_ppo(out_dir, overrides)
    return {"dir": out_dir, "returncode": returncode, "metrics": metrics, "log": log}


@pytest.mark.e2e
def test_grpo_two_steps_log_verl_metrics(grpo_run):
    assert grpo_run["returncode"] == 0, grpo_run["log"][-5000:]
    steps = _training_steps(grpo_run["metrics"])
    assert [entry["step"] for entry in steps] == [1, 2]
    for entry in steps:
        missing = [name for name in REQUIRED_METRICS if name not in entry]
        assert not missing, missing
        assert entry["training/global_step"] == entry["step"]
        # The hf rollout's log-probs agree with the actor's recomputation (same weights, same temperature).
        assert entry["training/rollout_probs_diff_max"] < 1e-2


@pytest.mark.e2e
def test_equal_length_sequences_train(grpo_run):
    """Every sequence has the same total length (the TransferQueue layout veRL 0.9.1 corrupts) and updates run."""
    assert grpo_run["returncode"] == 0, grpo_run["log"][-5000:]
    for entry in _training_steps(grpo_run["metrics"]):
        assert entry["response_length/min"] == entry["response_length/max"] == RESPONSE_LENGTH
        assert entry["prompt_length/min"] == entry["prompt_length/max"]
        assert entry["global_seqlen/minmax_diff"] == 0
        assert "timing_s/update_actor" in entry


@pytest.mark.e2e
def test_resume_from_checkpoint(grpo_run, run_main_ppo, tmp_path, colour_data_dir):
    """Step 3 after a restart continues from the step-2 checkpoint: global step and data position restored."""
    assert grpo_run["returncode"] == 0, grpo_run["log"][-5000:]
    checkpoints = grpo_run["dir"] / "checkpoints"
    assert (checkpoints / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert (checkpoints / "global_step_2" / "data.pt").exists()
    # Without shuffling, step k trains on batch k-1; a restart that lost the data position would see batch 0.
    first_run_rollouts = grpo_run["dir"] / "rollouts"
    for step in (1, 2):
        assert _rollout_ground_truths(first_run_rollouts, step) == _dataset_ground_truths(colour_data_dir, step - 1)
    assert _dataset_ground_truths(colour_data_dir, 2) != _dataset_ground_truths(colour_data_dir, 0)

    overrides = [
        "trainer.total_training_steps=3",
        "data.shuffle=false",
        "actor_rollout_ref.rollout.ignore_eos=true",
        f"trainer.default_local_dir={checkpoints}",
        f"trainer.rollout_data_dir={tmp_path / 'rollouts'}",
    ]
    returncode, metrics, log = run_main_ppo(tmp_path, overrides)
    assert returncode == 0, log[-5000:]
    assert f"Resuming from {checkpoints / 'global_step_2'}" in log
    steps = _training_steps(metrics)
    assert [entry["step"] for entry in steps] == [3]
    assert steps[0]["training/global_step"] == 3
    assert _rollout_ground_truths(tmp_path / "rollouts", 3) == _dataset_ground_truths(colour_data_dir, 2)


# ---------------------------------------------------------------------------------------------------------------
# GRPO + ToR (trainer mode tor_sync) on mixed batches: image, two-image and text-only samples.
# ---------------------------------------------------------------------------------------------------------------

TOR_CONFIG = {"config_path": "pkg://verl_tor.config", "config_name": "tor_trainer"}
SPREAD_REWARD = [
    f"reward.custom_reward_function.path={Path(__file__).parent / 'e2e_rewards.py'}",
    "reward.custom_reward_function.name=compute_score",
]


@pytest.fixture(scope="module")
def tor_run(run_main_ppo, tmp_path_factory, mixed_colour_data_dir):
    out_dir = tmp_path_factory.mktemp("tor")
    overrides = [
        *SPREAD_REWARD,
        "trainer.save_freq=2",
        "actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]",
    ]
    returncode, metrics, log = run_main_ppo(out_dir, overrides, data_dir=mixed_colour_data_dir, **TOR_CONFIG)
    return {"dir": out_dir, "returncode": returncode, "metrics": metrics, "log": log}


@pytest.mark.e2e
def test_tor_metrics_are_logged_and_plausible(tor_run):
    assert tor_run["returncode"] == 0, tor_run["log"][-5000:]
    steps = _training_steps(tor_run["metrics"])
    assert [entry["step"] for entry in steps] == [1, 2]
    for entry in steps:
        for name in ("reasoning_fraction", "perception_fraction", "overlap_fraction", "mean_weight"):
            assert 0 < entry[f"tor/{name}"] <= 1, (name, entry[f"tor/{name}"])
        # At most ⌈0.3·N⌉ of N tokens per set (N ≥ 16 valid tokens here).
        assert entry["tor/reasoning_fraction"] <= 0.3 + 1 / 16
        assert entry["tor/perception_fraction"] <= 0.3 + 1 / 16
        assert entry["tor/nonfinite_fraction"] == 0
        assert 0 < entry["tor/counterfactual_token_fraction"] < 1
        assert "timing_s/tor_counterfactual" in entry
    # Over both steps the mixed data gave image and text-only samples, and removing the image changed the
    # old policy's log-probs: the sensitivity is not zero.
    assert any(0 < entry["tor/image_sample_fraction"] < 1 for entry in steps)
    assert all(entry["tor/mean_sensitivity"] > 0 for entry in steps)


@pytest.mark.e2e
def test_tor_updates_the_actor(tor_run, tiny_model_dir):
    from safetensors.torch import load_file

    assert tor_run["returncode"] == 0, tor_run["log"][-5000:]
    steps = _training_steps(tor_run["metrics"])
    assert all(entry["actor/grad_norm"] > 0 for entry in steps)
    before = load_file(os.path.join(tiny_model_dir, "model.safetensors"))
    hf_dir = tor_run["dir"] / "checkpoints" / "global_step_2" / "actor" / "huggingface"
    (after_file,) = hf_dir.glob("*.safetensors")
    after = load_file(after_file)
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert "lm_head.weight" in changed, changed


@pytest.mark.e2e
def test_bad_tor_value_stops_the_run_before_any_model_is_built(run_main_ppo, tmp_path):
    returncode, metrics, log = run_main_ppo(tmp_path, ["tor.perception_quantile=1.5"], **TOR_CONFIG)
    assert returncode != 0
    assert "tor.perception_quantile must be in [0, 1], got 1.5" in log
    # veRL's config validation in the driver rejected it: Ray never started, no worker built a model.
    assert "ray init kwargs" not in log and "Loading weights" not in log
    assert metrics == []


# ---------------------------------------------------------------------------------------------------------------
# GRPO + ToR with a tiny Qwen3-VL on two data-parallel ranks (gloo), every sample of step 1 recorded by the token
# inspector and checked against a recomputation from scratch; the inspector page of that run in a real browser.
# ---------------------------------------------------------------------------------------------------------------

TWO_RANK_FAMILY = "qwen3_vl"

TWO_RANKS = [
    *SPREAD_REWARD,
    "trainer.n_gpus_per_node=2",
    # 2 prompts x 3 responses in a fixed order: step 1 holds one text-only and one image prompt, so 3 image
    # samples, an odd number that the image-removed request pads to a multiple of the two ranks.
    "data.train_batch_size=2",
    "actor_rollout_ref.rollout.n=3",
    "actor_rollout_ref.actor.ppo_mini_batch_size=2",
    "data.shuffle=false",
    "tor.inspect.samples_per_step=100",
]


@pytest.fixture(scope="module")
def two_rank_run(run_main_ppo, tmp_path_factory, mixed_colour_data_dir, tiny_model_dirs):
    out_dir = tmp_path_factory.mktemp("tor_two_ranks")
    model_dir = tiny_model_dirs[TWO_RANK_FAMILY]
    returncode, metrics, log = run_main_ppo(
        out_dir, TWO_RANKS, data_dir=mixed_colour_data_dir, model_dir=model_dir, **TOR_CONFIG
    )
    return {"dir": out_dir, "model_dir": model_dir, "returncode": returncode, "metrics": metrics, "log": log}


def _inspect_steps(run: dict) -> list[dict]:
    from verl_tor.inspect.reader import find_inspect_file, read_records

    path = find_inspect_file(str(run["dir"]))
    assert path is not None, "the run recorded no token inspector file"
    return read_records(path)[1]


@pytest.mark.e2e
def test_two_ranks_train_with_plausible_tor_metrics(two_rank_run):
    assert two_rank_run["returncode"] == 0, two_rank_run["log"][-5000:]
    steps = _training_steps(two_rank_run["metrics"])
    assert [entry["step"] for entry in steps] == [1, 2]
    for entry in steps:
        for name in ("reasoning_fraction", "perception_fraction", "mean_weight"):
            assert 0 < entry[f"tor/{name}"] <= 1, (name, entry[f"tor/{name}"])
        assert entry["tor/nonfinite_fraction"] == 0
        assert entry["tor/mean_sensitivity"] > 0
        assert entry["actor/grad_norm"] > 0
    assert steps[0]["tor/image_sample_fraction"] == 0.5  # 3 of 6: the padded image-removed request
    recorded = _inspect_steps(two_rank_run)
    assert [step["step"] for step in recorded] == [1, 2]
    assert all(len(step["samples"]) == step["n_samples"] == 6 for step in recorded)


class _FromScratch:
    """A recorded sample's log-probs and scores, recomputed from its dataset row with plain transformers in float32
    in this process: the conversation rendered by the processor's chat template, with and without its images."""

    def __init__(self, model_dir: str, data_dir: str):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.rows = pd.read_parquet(os.path.join(data_dir, "train.parquet"))

    @torch.no_grad()
    def response_logits(self, index: int, response_ids: list[int], with_images: bool) -> tuple[torch.Tensor, str]:
        """``[R, V]`` float64 logits that predict the response tokens, and the decoded prompt."""
        from PIL import Image

        row = self.rows.iloc[index]
        *images, text = row["prompt"][0]["content"].split("<image>")  # veRL's dataset: one "<image>" per picture
        content = [{"type": "image"}] * len(images) * with_images + [{"type": "text", "text": text}]
        rendered = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        pictures = [Image.open(io.BytesIO(image["bytes"])).convert("RGB") for image in row["images"]]
        inputs = self.processor(
            text=[rendered], images=pictures if with_images and pictures else None, return_tensors="pt"
        )
        prompt_length = inputs["input_ids"].shape[1]
        prompt_text = self.processor.tokenizer.decode(inputs["input_ids"][0])
        response = torch.tensor([response_ids])
        inputs["input_ids"] = torch.cat([inputs["input_ids"], response], dim=1)
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        if "mm_token_type_ids" in inputs:  # text tokens are type 0
            inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(response)], dim=1)
        return self.model(**inputs).logits[0, prompt_length - 1 : -1].double(), prompt_text


@pytest.mark.e2e
def test_two_rank_scores_and_weights_equal_a_recomputation_from_scratch(two_rank_run, mixed_colour_data_dir):
    """Step 1 (initial weights): every token's truncated entropy and visual sensitivity as the two ranks computed
    them (the image-removed request split over both, padded) equal a one-process float32 recomputation from the
    dataset rows; the sets are the batch-wide top 30 % of those recomputed scores, and the weights follow the sets."""
    import re

    from reference_math import reference_truncated_entropy

    assert two_rank_run["returncode"] == 0, two_rank_run["log"][-5000:]
    step = _inspect_steps(two_rank_run)[0]
    scratch = _FromScratch(two_rank_run["model_dir"], mixed_colour_data_dir)
    recomputed = {"H": [], "S": [], "set": [], "valid": []}
    logged = {"H": [], "S": []}
    for sample in step["samples"]:
        tokens, index = sample["tokens"], sample["extra_info"]["index"]
        logits, prompt_text = scratch.response_logits(index, tokens["id"], with_images=True)
        # The recorded prompt is the conversation rendered here (vision pads collapsed by the recorder).
        collapsed = re.sub(r"(?:<\|image_pad\|>)+", lambda m: f"<|image_pad|>×{m.group(0).count('<|')}", prompt_text)
        assert sample["prompt"] == collapsed
        positions = torch.arange(len(tokens["id"]))
        log_probs = torch.log_softmax(logits, dim=-1)[positions, torch.tensor(tokens["id"])]
        entropy = reference_truncated_entropy(logits, 0.95)
        sensitivity = np.zeros(len(positions))
        if sample["has_image"]:
            removed, _ = scratch.response_logits(index, tokens["id"], with_images=False)
            removed_log_probs = torch.log_softmax(removed, dim=-1)[positions, torch.tensor(tokens["id"])]
            sensitivity = (log_probs - removed_log_probs).abs().numpy()
        np.testing.assert_allclose(tokens["H"], entropy, rtol=1e-5, atol=1e-5)
        # S is a difference of two float32 log-probs of magnitude ~6 (a few 1e-6 of rounding each), its values
        # ~1e-2: a response scored against another sample's image-removed pass would be off by ~S itself.
        np.testing.assert_allclose(tokens["S"], sensitivity, rtol=1e-4, atol=2e-5)
        for name, values in (("H", entropy), ("S", sensitivity), ("set", tokens["set"]), ("valid", tokens["valid"])):
            recomputed[name].extend(values)
        for name in logged:
            logged[name].extend(tokens[name])

    valid = np.array(recomputed["valid"])
    sets = np.array(recomputed["set"])
    n_valid = int(valid.sum())
    # How far a recomputed score may be from the ranks' own (the allclose tolerances above).
    agreement = {"H": (1e-5, 1e-5), "S": (1e-4, 2e-5)}
    for name, key, members in (("reasoning", "H", ("reasoning", "both")), ("perception", "S", ("perception", "both"))):
        threshold = step["thresholds"][name]
        score, recorded = np.array(recomputed[key]), np.array(logged[key])
        selected = np.isin(sets, members) & valid
        budget = min(math.ceil(0.3 * n_valid), int(((recorded > 0) & valid).sum()))
        assert ((score > 0) & valid).sum() == ((recorded > 0) & valid).sum(), name  # the same tokens score 0
        assert selected.sum() == budget, name
        assert step["fractions"][name] == pytest.approx(budget / n_valid)
        # Batch-wide top scores, on the ranks' own scores (recorded to 6 significant digits): everything above the
        # threshold is in, everything below is out.
        rounding = 1e-5 * abs(threshold)
        assert selected[valid & (recorded > threshold + rounding)].all(), name
        assert not selected[valid & (recorded < threshold - rounding)].any(), name
        # And on the recomputed scores, up to how far they may differ from the ranks' (tokens that close to the
        # threshold may fall on either side of it).
        rtol, atol = agreement[key]
        tolerance = atol + rtol * abs(threshold)
        assert selected[valid & (score > threshold + tolerance)].all(), name
        assert not selected[valid & (score < threshold - tolerance)].any(), name
    gamma = {"reasoning": 1.0, "both": 1.0, "perception": 0.5, "none": 0.0}
    for sample in step["samples"]:
        tokens = sample["tokens"]
        expected = [gamma[s] if v else 0.0 for s, v in zip(tokens["set"], tokens["valid"], strict=True)]
        assert tokens["w"] == expected
        np.testing.assert_allclose(tokens["adv_loss"], np.array(tokens["adv"]) * np.array(tokens["w"]), rtol=1e-5)


@pytest.mark.e2e
@needs_chromium
def test_inspector_page_of_the_two_rank_run_shows_every_recorded_token(two_rank_run, tmp_path):
    from verl_tor.inspect.page import write_page

    assert two_rank_run["returncode"] == 0, two_rank_run["log"][-5000:]
    page = write_page(str(two_rank_run["dir"]), out=str(tmp_path / "inspect.html"))
    dom = dump_dom("file://" + page, tmp_path)
    recorded = _inspect_steps(two_rank_run)
    assert dom.sections == [str(step["step"]) for step in recorded]
    for step in recorded:
        for sample in step["samples"]:
            shown_tokens = dom.samples[(str(step["step"]), str(sample["index"]))]["tokens"]
            tokens = sample["tokens"]
            assert [text for text, *_ in shown_tokens] == [shown(text) for text in tokens["text"]]
            assert [token_set for _, token_set, *_ in shown_tokens] == tokens["set"]
            assert [float(weight) for _, _, weight, _ in shown_tokens] == tokens["w"]
    chromium("file://" + page, tmp_path, f"--screenshot={tmp_path / 'inspect.png'}", "--window-size=1400,1000")
    assert (tmp_path / "inspect.png").stat().st_size > 10_000


# ---------------------------------------------------------------------------------------------------------------
# GRPO + ToR in veRL's colocate_async trainer mode (asynchronous replay buffer, generation aborted at each weight
# update and resumed after it through the hf rollout), with a tiny Qwen3.5 (linear-attention layers).
# ---------------------------------------------------------------------------------------------------------------

ASYNC_FAMILY = "qwen3_5"


@pytest.fixture(scope="module")
def colocate_async_run(run_main_ppo, tmp_path_factory, mixed_colour_data_dir, tiny_model_dirs):
    out_dir = tmp_path_factory.mktemp("tor_colocate_async")
    overrides = [*SPREAD_REWARD, "trainer.v1.trainer_mode=tor_colocate_async", "trainer.total_training_steps=3"]
    returncode, metrics, log = run_main_ppo(
        out_dir, overrides, data_dir=mixed_colour_data_dir, model_dir=tiny_model_dirs[ASYNC_FAMILY], **TOR_CONFIG
    )
    return {"dir": out_dir, "returncode": returncode, "metrics": metrics, "log": log}


@pytest.mark.e2e
def test_colocate_async_trains_with_tor_on_stale_batches(colocate_async_run):
    assert colocate_async_run["returncode"] == 0, colocate_async_run["log"][-5000:]
    steps = _training_steps(colocate_async_run["metrics"])
    assert [entry["step"] for entry in steps] == [1, 2, 3]
    for entry in steps:
        for name in ("reasoning_fraction", "perception_fraction", "mean_weight"):
            assert 0 < entry[f"tor/{name}"] <= 1, (name, entry[f"tor/{name}"])
        assert entry["tor/reasoning_fraction"] <= 0.3 + 1 / 16
        assert entry["tor/nonfinite_fraction"] == 0
        assert entry["tor/mean_sensitivity"] > 0
        assert entry["actor/grad_norm"] > 0
        assert "timing_s/tor_counterfactual" in entry
    # The mode really ran asynchronously: a batch generated by weights one update older was trained on.
    assert any(entry["training/off_policy/trajectory_staleness/max"] >= 1 for entry in steps)
