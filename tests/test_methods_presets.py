"""Every preset's weights against its paper's formula written out by hand (python floats, float64, explicit sorts) on
small batches: three responses of a few tokens, ties, a masked token, a response without an image, and padding."""

from __future__ import annotations

import math

import pytest
import torch

from verl_tor.methods.config import TokenCreditConfig
from verl_tor.methods.registry import METHODS
from verl_tor.steps import batch_token_credit

# Three responses and a padding row. Response 2 has no image (its counterfactual log-probs are its own), response 1
# has a masked token (tool output), response 3 is veRL's data-parallel padding.
LOG_PROBS = [[-0.5, -1.0, -0.2, -2.0, -0.125], [-0.3, -0.75, -1.5, -0.9], [-0.4, -0.6, -1.2], [-1.0, -1.0]]
COUNTERFACTUAL = [[-2.5, -1.0, -0.9, -4.0, -3.125], [-0.3, -2.75, -0.2, -3.0], [-0.4, -0.6, -1.2], [-9.0, -9.0]]
# Ties: entropy 0.8 at response 0 tokens 1, 2 and response 1 token 0 (across responses); |Δ| = 2 at (0, 0), (0, 3)
# and (1, 1), exactly. The masked token (1, 2) has the largest entropy: it must never be selected.
ENTROPY = [[0.1, 0.8, 0.8, 0.0, 1.5], [0.8, 0.2, 2.0, 0.05], [0.9, 0.0, 0.3], [9.0, 9.0]]
MASKS = [[1, 1, 1, 1, 1], [1, 1, 0, 1], [1, 1, 1], [1, 1]]
HAS_IMAGE = [True, True, False, True]
IS_PADDING = [False, False, False, True]


def credit(method: str, **overrides):
    cfg = TokenCreditConfig.from_mapping({"method": method, **overrides})
    tensors = [[torch.tensor(row) for row in rows] for rows in (LOG_PROBS, COUNTERFACTUAL, ENTROPY, MASKS)]
    log_probs, counterfactual, entropy, masks = tensors
    scores = {}
    if cfg.uses_reasoning_score:
        scores["reasoning_score"] = entropy
    if cfg.uses_perception_score:
        scores |= {"old_log_probs": log_probs, "counterfactual_log_probs": counterfactual, "has_image": HAS_IMAGE}
    return cfg, batch_token_credit(cfg, masks, IS_PADDING, **scores)


def valid_positions() -> list[tuple[int, int]]:
    """(response, token) of every valid token of the real responses, in row-major order."""
    return [(i, t) for i, mask in enumerate(MASKS) if not IS_PADDING[i] for t, m in enumerate(mask) if m]


def delta(i: int, t: int) -> float:
    """Δ = log π(o_t | ∅) − log π(o_t | I), in float32 as the two log-probs are stored."""
    as32 = lambda x: torch.tensor(x, dtype=torch.float32).item()  # noqa: E731
    return 0.0 if not HAS_IMAGE[i] else as32(COUNTERFACTUAL[i][t]) - as32(LOG_PROBS[i][t])


def k3(i: int, t: int) -> float:
    d = max(-20.0, min(20.0, delta(i, t)))
    return min(math.exp(d) - d - 1.0, 10.0)


def top(positions: list[tuple[int, int]], score, fraction: float) -> set[tuple[int, int]]:
    """⌈fraction·N⌉ of ``positions`` by descending score, ties to the earlier position; scores ≤ 0 never."""
    budget = math.ceil(round(fraction * len(positions), 9))
    ranked = sorted((p for p in positions if score(*p) > 0), key=lambda p: (-score(*p), p))
    return set(ranked[:budget])


def assert_weights(result, expected: dict[tuple[int, int], float]) -> None:
    """Every token's weight: ``expected`` on the listed valid tokens, 0 on every other position."""
    for i, row in enumerate(result.weights):
        for t in range(len(row)):
            assert row[t].item() == pytest.approx(expected.get((i, t), 0.0), rel=1e-6, abs=1e-7), (i, t)


def test_tor_is_eq_9_over_the_batch():
    _, result = credit("tor")
    positions = valid_positions()
    assert len(positions) == 11
    reasoning = top(positions, lambda i, t: ENTROPY[i][t], 0.3)  # ⌈3.3⌉ = 4 of 11
    perception = top(positions, lambda i, t: abs(delta(i, t)), 0.3)
    # The ties at 0.8: 2.0, 1.5, 0.9 first, then the earliest 0.8 (response 0, token 1).
    assert reasoning == {(0, 4), (2, 0), (0, 1), (0, 2)}
    assert perception == {(0, 4), (1, 3), (0, 0), (0, 3)}  # |Δ| 3, 2.1, then two of the three 2s
    gamma = {(True, True): 1.0, (True, False): 1.0, (False, True): 0.5, (False, False): 0.0}
    assert_weights(result, {p: gamma[(p in reasoning, p in perception)] for p in positions})
    assert result.metrics["reasoning_fraction"] == pytest.approx(4 / 11)
    # The response without an image has no perception score at all, though its log-probs are not equal to veRL's.
    assert all(v == 0 for v in result.perception_score[2].tolist())


def test_tor_with_the_overlap_as_its_own_weight_gives_all_of_tp_weight_one():
    """The perception-only arm: γ_r = γ_o = 0, γ_p = γ_overlap = 1 — every perception token, also those in T_r."""
    _, result = credit("tor", reasoning_weight=0.0, perception_weight=1.0, overlap_weight=1.0, other_weight=0.0)
    positions = valid_positions()
    perception = top(positions, lambda i, t: abs(delta(i, t)), 0.3)
    assert perception & top(positions, lambda i, t: ENTROPY[i][t], 0.3), "the data must have an overlap"
    assert_weights(result, {p: 1.0 for p in perception})


def test_grpo_weighs_every_valid_token_one():
    cfg, result = credit("grpo")
    assert not cfg.uses_reasoning_score and not cfg.uses_perception_score
    assert_weights(result, {p: 1.0 for p in valid_positions()})


def test_entropy_top20_is_a_mask_of_the_batch_top_20_percent_by_entropy():
    cfg, result = credit("entropy_top20")
    assert cfg.entropy_top_p == 1.0  # the full entropy
    selected = top(valid_positions(), lambda i, t: ENTROPY[i][t], 0.2)  # ⌈2.2⌉ = 3
    assert selected == {(0, 4), (2, 0), (0, 1)}
    assert_weights(result, {p: 1.0 for p in selected})


def test_vppo_is_a_per_response_top_40_percent_mask_times_the_trajectory_scale():
    cfg, result = credit("vppo", counterfactual="remove_image")
    expected, mean_k3 = {}, {}
    for i in (0, 1, 2):
        positions = [p for p in valid_positions() if p[0] == i]
        for p in top(positions, k3, 0.4):  # ⌈0.4·n_i⌉ of the response's own valid tokens
            expected[p] = 1.0
        mean_k3[i] = sum(k3(*p) for p in positions) / len(positions)
    assert (2, 0) not in expected  # no image: no visual dependency, no token
    # Trajectory scaling over the responses with an image: min-max, dynamic maximum 0.9 + 0.1 / mean(n).
    low, high = min(mean_k3[0], mean_k3[1]), max(mean_k3[0], mean_k3[1])
    normalised = {i: (mean_k3[i] - low) / (high - low) for i in (0, 1)}
    beta_max = 0.9 + (1 - 0.9) / (sum(normalised.values()) / 2)
    scale = {i: 0.9 + normalised[i] * (beta_max - 0.9) for i in (0, 1)} | {2: 1.0}
    assert sum(scale[i] for i in (0, 1)) / 2 == pytest.approx(1.0)  # the dynamic maximum keeps the mean at 1
    assert_weights(result, {p: w * scale[p[0]] for p, w in expected.items()})
    assert result.metrics["trajectory_scale_min"] == pytest.approx(0.9)


def test_pgpo_is_gated_min_max_log1p_k3_renormalised_to_the_length():
    cfg, result = credit("pgpo", counterfactual="remove_image")
    tau, beta = cfg.pgpo_tau, cfg.pgpo_beta
    assert (tau, beta) == (0.4, 2.0)
    expected = {}
    for i in (0, 1, 2):
        positions = [p for p in valid_positions() if p[0] == i]
        logs = {p: math.log(1 + k3(*p)) for p in positions}
        low, high = min(logs.values()), max(logs.values())
        if high == low:  # no image: nothing to reshape
            expected |= {p: 1.0 for p in positions}
            continue
        importance = {p: (logs[p] - low) / (high - low) for p in positions}
        gated = {p: v / tau if v < tau else 1 + beta * (v - tau) / (1 - tau) for p, v in importance.items()}
        total = sum(gated.values())
        expected |= {p: w * len(positions) / total for p, w in gated.items()}
    assert_weights(result, expected)
    for i, mask in enumerate(MASKS[:3]):  # mass conservation: each response's weights sum to its length
        assert result.weights[i].sum().item() == pytest.approx(sum(mask), rel=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Presets, overrides and refusals.

TABLE = {
    "tor": ("remove_image", "abs_log_ratio", 0.95, "batch", 0.3, 0.3, "set_weights", "none"),
    "grpo": (None, None, None, "batch", 0.0, 0.0, "set_weights", "none"),
    "entropy_top20": (None, None, 1.0, "batch", 0.2, 0.0, "set_weights", "none"),
    "vppo": ("black_patches", "k3", None, "response", 0.0, 0.4, "set_weights", "vppo"),
    "pgpo": ("mask_image_attention", "k3", None, "batch", 0.0, 0.0, "pgpo_soft", "none"),
}
"""The presets as docs/methods.md lists them."""


@pytest.mark.parametrize("name", list(METHODS))
def test_presets_resolve_to_the_documented_components(name):
    cfg = TokenCreditConfig.from_mapping({"method": name})
    keys = ("counterfactual", "perception_score", "entropy_top_p", "scope", "reasoning_quantile",
            "perception_quantile", "use", "trajectory_scaling")  # fmt: skip
    assert tuple(getattr(cfg, key) for key in keys) == TABLE[name]
    assert cfg.components()["method"] == name


def test_components_override_the_preset_and_null_keeps_it():
    cfg = TokenCreditConfig.from_mapping({"method": "vppo", "perception_quantile": 0.3, "perception_score": None})
    assert (cfg.perception_quantile, cfg.perception_score, cfg.scope) == (0.3, "k3", "response")
    cfg = TokenCreditConfig.from_mapping({"method": "entropy_top20", "entropy_top_p": 0.95, "reasoning_quantile": 0.3})
    assert (cfg.entropy_top_p, cfg.reasoning_quantile, cfg.other_weight) == (0.95, 0.3, 0.0)


@pytest.mark.parametrize(
    "section, key",
    [
        ({"method": "ppo"}, "tor.method"),
        ({"method": "vppo", "scope": "response", "reasoning_quantile": 0.2}, "tor.scope"),
        ({"method": "tor", "scope": "response"}, "tor.scope"),  # ToR's T_r is batch-level
        ({"method": "grpo", "counterfactual": "remove_image"}, "tor.counterfactual"),  # no perception score to use it
        ({"method": "entropy_top20", "perception_weight": 0.5}, "tor.perception_weight"),  # no T_p
        ({"method": "pgpo", "reasoning_quantile": 0.3}, "tor.reasoning_quantile"),  # soft weights have no sets
        ({"method": "tor", "pgpo_tau": 0.5}, "tor.pgpo_tau"),
        ({"method": "tor", "vppo_min_scale": 0.8}, "tor.vppo_min_scale"),
        ({"method": "pgpo", "pgpo_tau": 1.0}, "tor.pgpo_tau"),
        ({"method": "tor", "use": "soft"}, "tor.use"),
    ],
)
def test_impossible_settings_stop_naming_the_key(section, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        TokenCreditConfig.from_mapping(section)


def test_methods_import_nothing_from_verl_or_the_rest_of_verl_tor():
    """The methods' math is pure torch: no veRL import, nothing from verl_tor outside verl_tor.methods."""
    import ast
    import pathlib

    import verl_tor.methods

    for path in pathlib.Path(verl_tor.methods.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                root = name.split(".")[0]
                assert root != "verl", (path.name, name)
                assert root != "verl_tor" or name.startswith("verl_tor.methods"), (path.name, name)
