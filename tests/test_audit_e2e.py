"""``python -m verl_tor.audit --cpu``: one real main_ppo step (Ray, TransferQueue, the hf rollout) in trainer mode
``tor_audit`` on mixed data (text-only, one- and two-image prompts), checked against what the record itself holds:
ToR's sets are the batch's top 30 % of the recorded scores and its weights follow them, GRPO's weights are 1, a
prompt without an image has no perception score, the overlaps are those of the recorded sets, the passes were
timed, and nothing was trained or saved."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from verl_tor.audit.stats import jaccard, share

RUN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def audit_run(tiny_model_dir, mixed_colour_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "result"
    ray_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are length-limited
    command = [sys.executable, "-m", "verl_tor.audit", tiny_model_dir, mixed_colour_data_dir, "--cpu"]
    command += ["--prompts", "4", "--n", "4", "--seed", "0", "--out", str(out)]
    command += ["--", "data.shuffle=false", f"+ray_kwargs.ray_init._temp_dir={ray_dir}"]
    log = out.parent / "audit_cli.log"
    try:
        with open(log, "w") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True)
            try:
                returncode = process.wait(timeout=RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.terminate()  # the audit stops main_ppo and its Ray cluster, then exits
                returncode = process.wait(timeout=120)
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    done = subprocess.CompletedProcess(command, returncode, stdout="", stderr=log.read_text()[-3000:])
    audit = json.loads((out / "audit.json").read_text()) if (out / "audit.json").exists() else None
    return {"out": out, "done": done, "audit": audit}


def ok(run) -> dict:
    log = run["out"] / "main_ppo.log"
    assert run["done"].returncode == 0, run["done"].stderr[-3000:] + (log.read_text()[-5000:] if log.exists() else "")
    return run["audit"]


@pytest.mark.e2e
def test_audit_writes_its_outputs_and_trains_nothing(audit_run):
    audit = ok(audit_run)
    out = audit_run["out"]
    assert sorted(os.listdir(out)) == ["audit.html", "audit.json", "command.sh", "main_ppo.log"]
    assert not [p for p in os.listdir(out.parent) if ".partial" in p]
    log = (out / "main_ppo.log").read_text()
    assert "actor/pg_loss" not in log and "actor/grad_norm" not in log  # the update never ran
    assert "timing_s/old_log_prob" in log and "tor/audit_write_s" in log
    assert audit["settings"]["prompts"] == 4 and audit["settings"]["n"] == 4 and audit["n_samples"] == 16
    passes = audit["passes"]
    assert passes["old_log_prob"]["time_s"] > 0 and passes["remove_image"]["time_s"] > 0
    assert 0 < passes["remove_image"]["tor/image_sample_fraction"] < 1  # mixed data: some prompts have no image
    page = (out / "audit.html").read_text()
    assert json.dumps(audit["samples"][0]["uid"]) in page


@pytest.mark.e2e
def test_tor_sets_and_weights_follow_the_recorded_scores(audit_run):
    audit = ok(audit_run)
    cfg = audit["methods"]["tor"]["config"]
    gamma = {"reasoning": cfg["reasoning_weight"], "both": cfg["reasoning_weight"]}
    gamma |= {"perception": cfg["perception_weight"], "none": cfg["other_weight"]}
    valid = np.concatenate([s["tokens"]["valid"] for s in audit["samples"]])
    n_valid = int(valid.sum())
    assert audit["n_valid_tokens"] == n_valid
    sets = np.concatenate([s["methods"]["tor"]["set"] for s in audit["samples"]])
    for name, members in (("reasoning", ("reasoning", "both")), ("perception", ("perception", "both"))):
        score = np.concatenate([s["methods"]["tor"]["scores"][name] for s in audit["samples"]])
        selected = np.isin(sets, members) & valid
        budget = min(math.ceil(cfg[f"{name}_quantile"] * n_valid), int(((score > 0) & valid).sum()))
        assert selected.sum() == budget == audit["methods"]["tor"]["sets"][name]["count"], name
        threshold = audit["methods"]["tor"]["sets"][name]["threshold"]
        rounding = 1e-5 * abs(threshold)  # scores and threshold are recorded to 6 significant digits
        assert selected[valid & (score > threshold + rounding)].all(), name
        assert not selected[valid & (score < threshold - rounding)].any(), name
    for sample in audit["samples"]:
        tor, grpo = sample["methods"]["tor"], sample["methods"]["grpo"]
        valid_tokens = sample["tokens"]["valid"]
        assert tor["w"] == [gamma[s] if v else 0.0 for s, v in zip(tor["set"], valid_tokens, strict=True)]
        assert grpo["w"] == [1.0 if v else 0.0 for v in valid_tokens]
        # A prompt without an image has nothing to take away: its perception score is 0 (never selected).
        if not sample["has_image"]:
            assert set(tor["scores"]["perception"]) == {0.0}
    assert any(max(s["methods"]["tor"]["scores"]["perception"]) > 0 for s in audit["samples"] if s["has_image"])
    assert all(s["has_image"] == ("<|image_pad|>" in s["prompt"]) for s in audit["samples"])


@pytest.mark.e2e
def test_overlaps_are_those_of_the_recorded_sets(audit_run):
    audit = ok(audit_run)
    valid = np.concatenate([s["tokens"]["valid"] for s in audit["samples"]])
    # Every method's recorded token sets, as the labels name them: method/set (a token in "both" is in each set).
    vectors = {}
    for label in audit["overlap"]["labels"]:
        method, name = label.split("/")
        sets = np.concatenate([s["methods"][method]["set"] for s in audit["samples"]])[valid]
        vectors[label] = np.isin(sets, (name, "both"))
    assert list(vectors)[:2] == ["tor/reasoning", "tor/perception"] and len(vectors) > 2
    overlap = audit["overlap"]
    assert overlap["labels"] == list(vectors)
    for i, a in enumerate(overlap["labels"]):
        for j, b in enumerate(overlap["labels"]):
            assert overlap["jaccard"][i][j] == pytest.approx(jaccard(vectors[a], vectors[b]), rel=1e-5)
            assert overlap["share"][i][j] == pytest.approx(share(vectors[a], vectors[b]), rel=1e-5)
    assert audit["correlation"]["labels"][:2] == ["tor/reasoning", "tor/perception"]
