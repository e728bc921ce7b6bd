"""benchmarks/gpu_tor_share.py: its CPU mode runs as documented, and what it builds is what it says it measures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks import gpu_tor_share

SCRIPT = Path(gpu_tor_share.__file__)


def test_quick_mode_runs_as_a_script_and_reports_finite_positive_ratios(tmp_path):
    out = tmp_path / "report.json"
    # As the docs run it: a script, from any directory (so it must find this checkout's verl_tor by itself), where
    # nothing but torch and transformers is installed: importing veRL's stack raises.
    blocked = ("verl", "tensordict", "vllm", "ray", "flash_attn", "hydra", "omegaconf")
    run_script = f"import runpy, sys; sys.modules.update(dict.fromkeys({blocked!r})); "
    run_script += f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    done = subprocess.run(
        [sys.executable, "-c", run_script, "--quick", "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["skipped"] == []  # transformers 5.9 has both architectures
    assert [row["model"] for row in report["forward"]] == list(gpu_tor_share.MODELS)
    assert [(row["vocab"], row["logits"]) for row in report["entropy"]] == [
        (vocab, kind) for vocab in gpu_tor_share.ENTROPY_VOCABS for kind in ("LM-like", "flat")
    ]
    settings = report["settings"]
    for row in report["forward"]:
        for key in ("present_s", "removed_s", "vision_s", "time_ratio", "tor_added_share"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["model"], key)
        # None where CPU noise makes the vision tower alone look as slow as the whole forward.
        assert row["time_ratio_without_vision"] is None or row["time_ratio_without_vision"] > row["time_ratio"]
        assert row["tokens_per_sample_present"] - row["tokens_per_sample_removed"] == settings["visual_tokens"] + 2
        assert row["present_peak_bytes"] is None and row["memory_ratio"] is None  # no GPU memory on the CPU
    for row in report["entropy"]:
        for key in ("truncated_s", "plain_s", "time_ratio"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["vocab"], row["logits"], key)
        assert row["rows"] == settings["samples"] * settings["response_tokens"]
    flat = [row["rows_within_top_64"] for row in report["entropy"] if row["logits"] == "flat"]
    assert flat == [0.0, 0.0]  # the worst case is the fallback path on every row
    # The printed report: the JSON, then one table row per model and per entropy case.
    table_rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table_rows) == 2 + len(report["forward"]) + len(report["entropy"])
    assert json.loads(done.stdout[: done.stdout.index("\n}\n") + 2]) == report


def test_released_configs_build_the_released_parameter_counts():
    # The parameter counts the Hugging Face hub shows for the released checkpoints (safetensors metadata).
    released = {"Qwen2.5-VL-7B": 8_292_166_656, "Qwen3-VL-8B": 8_767_123_696}
    from transformers import AutoModelForImageTextToText

    for name, count in released.items():
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(gpu_tor_share.build_config(name, tiny=False))
        assert sum(p.numel() for p in model.parameters()) == count, name
        assert model.config._attn_implementation == "sdpa"


def test_image_removed_input_is_the_prompt_without_its_vision_block():
    from verl_tor.counterfactual.remove import vision_block_mask

    settings = gpu_tor_share.Settings.quick()
    config = gpu_tor_share.build_config("Qwen2.5-VL-7B", tiny=True)
    inputs, block_start = gpu_tor_share.image_batch(config, settings, torch.Generator().manual_seed(0))
    removed = gpu_tor_share.image_removed_inputs(inputs, block_start, settings.visual_tokens + 2)
    ids = inputs["input_ids"]
    assert int((ids == config.image_token_id).sum()) == settings.samples * settings.visual_tokens
    for row, kept in zip(ids, removed["input_ids"], strict=True):
        block = vision_block_mask(row, config.vision_start_token_id, config.vision_end_token_id)
        torch.testing.assert_close(kept, row[~block], rtol=0, atol=0)
    assert removed["position_ids"].shape == (3, *removed["input_ids"].shape)
    # One image's patches: visual tokens x the 2 x 2 merge.
    assert inputs["pixel_values"].shape[0] == settings.samples * settings.visual_tokens * 4


def test_plain_entropy_is_verls_entropy_from_logits():
    from verl.utils.torch_functional import entropy_from_logits

    logits = torch.randn(6, 500, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16) * 4
    torch.testing.assert_close(gpu_tor_share.plain_entropy(logits), entropy_from_logits(logits), rtol=0, atol=0)
