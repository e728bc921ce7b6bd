"""Every preset other than ToR (whose runs are in ``test_e2e_cpu.py``) through veRL's real ``main_ppo`` on the CPU:
one training step each on mixed image / text-only data, the weights applied through veRL's real loss. VPPO and
PGPO run with their papers' counterfactuals (black patches, masked image attention).

Each preset runs in another trainer mode or model family, so that the four runs together put the presets through
both CPU-runnable trainer modes and four of the five families (ToR's own runs cover Qwen3.5 asynchronously and the
two-rank sync run): VPPO's patch counterfactual through Qwen3-VL's processor (16-pixel patches, not Qwen2.5-VL's
14) in the asynchronous ``tor_colocate_async`` mode, PGPO's attention mask on Qwen3.5's hybrid linear/full
attention, the 80/20 rule on the Qwen3-VL mixture of experts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_e2e_cpu import SPREAD_REWARD, TOR_CONFIG, _run_main_ppo, _training_steps

SYNC, COLOCATE_ASYNC = "tor_sync", "tor_colocate_async"
# preset: (trainer mode, model family, extra overrides)
PRESETS = {
    "grpo": (SYNC, "qwen2_5_vl", []),
    "entropy_top20": (SYNC, "qwen3_vl_moe", []),
    "vppo": (COLOCATE_ASYNC, "qwen3_vl", []),
    # PGPO with the weights through veRL's per-token loss multiplier (a loss mode not homogeneous in A).
    "pgpo": (SYNC, "qwen3_5", ["actor_rollout_ref.actor.policy_loss.loss_mode=clip_cov"]),
}


@pytest.fixture(scope="module", params=list(PRESETS))
def preset_run(request, tmp_path_factory, tiny_model_dirs, mixed_colour_data_dir):
    name = request.param
    mode, family, extra = PRESETS[name]
    out_dir = tmp_path_factory.mktemp(name)
    overrides = [
        *SPREAD_REWARD,
        "trainer.total_training_steps=1",
        f"trainer.v1.trainer_mode={mode}",
        f"tor.method={name}",
        *extra,
    ]
    returncode, metrics, log = _run_main_ppo(
        out_dir, overrides, tiny_model_dirs[family], mixed_colour_data_dir, **TOR_CONFIG
    )
    architecture = json.loads((Path(tiny_model_dirs[family]) / "config.json").read_text())["architectures"][0]
    return {
        "name": name,
        "dir": out_dir,
        "returncode": returncode,
        "metrics": metrics,
        "log": log,
        "architecture": architecture,
    }


@pytest.mark.e2e
def test_each_preset_trains_one_step_with_its_own_weights(preset_run):
    name = preset_run["name"]
    assert preset_run["returncode"] == 0, preset_run["log"][-5000:]
    (step,) = _training_steps(preset_run["metrics"])
    assert step["actor/grad_norm"] > 0
    assert step["tor/nonfinite_fraction"] == 0
    counterfactual_pass = "timing_s/tor_counterfactual" in step
    if name == "grpo":
        assert step["tor/mean_weight"] == 1.0 and not counterfactual_pass
        assert step["tor/reasoning_fraction"] == step["tor/perception_fraction"] == 0
    elif name == "entropy_top20":
        # At most ⌈0.2·N⌉ of N ≥ 16 tokens, weight 1 each and 0 elsewhere; no image pass.
        assert 0 < step["tor/reasoning_fraction"] <= 0.2 + 1 / 16 and not counterfactual_pass
        assert step["tor/mean_weight"] == pytest.approx(step["tor/reasoning_fraction"])
        assert step["tor/perception_fraction"] == 0
    elif name == "vppo":
        assert counterfactual_pass and step["tor/mean_sensitivity"] > 0
        # black_patches keeps every token of an image sample (the longest samples) and reruns the vision tower.
        assert 0 < step["tor/image_sample_fraction"] <= step["tor/counterfactual_token_fraction"] < 1
        assert (
            step["tor/reasoning_fraction"] == 0 and 0 < step["tor/perception_fraction"] <= 0.5
        )  # ⌈0.4·4⌉ = 2 of a 4-token response
        # Factors in [0.9, dynamic max], in float32 (0.9 reads back as 0.8999999762).
        assert 0.9 - 1e-6 <= step["tor/trajectory_scale_min"] <= 1.0 <= step["tor/trajectory_scale_max"]
    else:  # pgpo: mass-conserving per response, so the mean weight is 1 while some tokens are amplified
        assert counterfactual_pass and step["tor/mean_sensitivity"] > 0
        assert step["tor/mean_weight"] == pytest.approx(1.0, rel=1e-5) and step["tor/max_weight"] > 1
    # The resolved method is logged and recorded next to the checkpoints (no run.json outside the recipes).
    recorded = json.loads((Path(preset_run["dir"]) / "checkpoints" / "tor_method.json").read_text())
    assert recorded["method"] == name and f'"method": "{name}"' in preset_run["log"]
    # The run was the mode and family it was meant to be (veRL prints its config and the model class it built).
    assert f"'trainer_mode': '{PRESETS[name][0]}'" in preset_run["log"]
    assert preset_run["architecture"] in preset_run["log"]
    assert recorded["weight_target"] == ("loss" if name == "pgpo" else "advantages")
