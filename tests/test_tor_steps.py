"""The ToR trainer's step logic as plain functions: weighting through veRL's own loss, advantages, config checks."""

import dataclasses
import math

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from transfer_queue import KVBatchMeta

from verl_tor.config_checks import read_tor_section
from verl_tor.methods.config import TokenCreditConfig
from verl_tor.methods.weights import token_weights
from verl_tor.nested import nested_rows
from verl_tor.steps import (
    batch_token_credit,
    counterfactual_rows,
    pad_rows_to_multiple,
    require_no_images_in_responses,
    unweighted_advantage_metrics,
)
from verl_tor.testing.actor_engine import compose_ppo_config

# ---------------------------------------------------------------------------------------------------------------
# Multiplying advantages by w ≥ 0 is the weighted clipped surrogate of Eq. 9, through veRL's real `ppo_loss`.
# ---------------------------------------------------------------------------------------------------------------

GRPO = ["actor_rollout_ref.actor.use_kl_loss=true", "actor_rollout_ref.actor.kl_loss_coef=0.01",
        "actor_rollout_ref.actor.kl_loss_type=low_var_kl", "actor_rollout_ref.actor.clip_ratio_low=0.2",
        "actor_rollout_ref.actor.clip_ratio_high=0.2", "actor_rollout_ref.actor.loss_agg_mode=token-mean"]  # fmt: skip
DAPO = ["actor_rollout_ref.actor.use_kl_loss=false", "actor_rollout_ref.actor.clip_ratio_low=0.2",
        "actor_rollout_ref.actor.clip_ratio_high=0.28", "actor_rollout_ref.actor.clip_ratio_c=3.0",
        "actor_rollout_ref.actor.loss_agg_mode=token-mean"]  # fmt: skip


def _actor_config(overrides):
    from verl.utils.config import omega_conf_to_dataclass

    sizes = ["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2", "actor_rollout_ref.actor.ppo_mini_batch_size=2"]
    return omega_conf_to_dataclass(compose_ppo_config(overrides + sizes).actor_rollout_ref.actor)


def _reference_loss(log_prob, old, adv, weight, ref, mask, cfg, use_kl, kl_coef):
    """Eq. 9 written out in float64: (1/Σ|o_i|) Σ w·(−clipped surrogate, dual-clipped for A < 0) + β·KL (unweighted)."""
    log_prob, old, adv, weight, ref = (t.double() for t in (log_prob, old, adv, weight, ref))
    ratio = torch.exp(torch.clamp(log_prob - old, -20, 20))
    clipped = torch.clamp(ratio, 1 - cfg.clip_ratio_low, 1 + cfg.clip_ratio_high)
    surrogate = torch.minimum(ratio * adv, clipped * adv)
    dual = torch.maximum(surrogate, cfg.clip_ratio_c * adv)  # for A < 0 the loss is capped at −c·A
    per_token = -torch.where(adv < 0, dual, surrogate)
    n = mask.sum()
    loss = (weight * per_token * mask).sum() / n
    if use_kl:
        delta = torch.clamp(ref - log_prob, -20, 20)
        kl = torch.clamp(torch.exp(delta) - delta - 1, -10, 10)
        loss = loss + kl_coef * (kl * mask).sum() / n
    return loss


@pytest.mark.parametrize("name,overrides", [("grpo", GRPO), ("dapo", DAPO)])
def test_weighted_advantages_equal_weighted_clipped_loss_through_verl_ppo_loss(name, overrides):
    from verl.workers.utils.losses import ppo_loss

    config = _actor_config(overrides)
    generator = torch.Generator().manual_seed(0)
    prompt_lens, response_lens = [3, 5, 4], [6, 2, 7]
    rows = len(prompt_lens)
    old = [torch.randn(n, generator=generator) * 0.5 - 1.0 for n in response_lens]
    ref = [o + 0.3 * torch.randn(o.shape, generator=generator) for o in old]
    # Current log-probs far enough from the old ones that both clip sides and the dual clip are hit.
    current = [o + 0.6 * torch.randn(o.shape, generator=generator) for o in old]
    current[1][0] += 1.5  # ratio > clip_ratio_c = 3 on a negative advantage: the dual clip
    current[2][1] += 2.0
    # GRPO advantages are per sequence; a negative one exercises the dual clip.
    advantage = [torch.full((n,), a) for n, a in zip(response_lens, [1.3, -0.7, -2.1], strict=True)]
    weight = [torch.tensor([1.0, 0.5, 0.0, 1.0, 0.0, 0.5]), torch.tensor([0.0, 1.0]),
              torch.tensor([0.5, 0.5, 1.0, 0.0, 0.0, 1.0, 0.5])]  # fmt: skip
    mask = [torch.ones(n) for n in response_lens]

    # veRL's model output: log-probs over prompt + response, left-shifted by one (value at t predicts t + 1).
    values = []
    for p, lp in zip(prompt_lens, current, strict=True):
        values += [torch.zeros(p - 1), lp, torch.zeros(1)]
    leaf = torch.cat(values).requires_grad_(True)
    offsets = torch.tensor([0] + list(torch.cumsum(torch.tensor(prompt_lens) + torch.tensor(response_lens), 0)))
    data = TensorDict(
        {
            "prompts": nested_rows([torch.ones(p, dtype=torch.long) for p in prompt_lens]),
            "responses": nested_rows([torch.ones(n, dtype=torch.long) for n in response_lens]),
            "response_mask": nested_rows([m.long() for m in mask]),
            "old_log_probs": nested_rows(old),
            "ref_log_prob": nested_rows(ref),
            "advantages": nested_rows([a * w for a, w in zip(advantage, weight, strict=True)]),
        },
        batch_size=[rows],
    )
    from verl.utils import tensordict_utils as tu

    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=sum(response_lens), global_batch_size=rows)
    model_output = {"log_probs": torch.nested.nested_tensor_from_jagged(leaf, offsets)}
    loss, metrics = ppo_loss(config, model_output, data)
    # The data reach both clip sides and the dual clip, so the equality below covers every branch.
    assert metrics["actor/pg_clipfrac"].values[0] > 0 and metrics["actor/pg_clipfrac_lower"].values[0] > 0
    (verl_grad,) = torch.autograd.grad(loss, leaf)

    reference_leaf = leaf.detach().clone().requires_grad_(True)
    starts = offsets[:-1] + torch.tensor(prompt_lens) - 1
    picked = [reference_leaf[s : s + n] for s, n in zip(starts.tolist(), response_lens, strict=True)]

    def pad(rows_):
        return torch.nn.utils.rnn.pad_sequence(rows_, batch_first=True)

    reference = _reference_loss(
        pad(picked), pad(old), pad(advantage), pad(weight), pad(ref), pad(mask), config,
        config.use_kl_loss, config.kl_loss_coef,
    )  # fmt: skip
    (reference_grad,) = torch.autograd.grad(reference, reference_leaf)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6, abs=1e-7)
    torch.testing.assert_close(verl_grad.double(), reference_grad.double(), rtol=1e-5, atol=1e-7)
    # Tokens with weight 0 get no policy gradient (only the KL term, when on).
    zero_weight = pad(weight) == 0
    grad_of = pad([verl_grad[s : s + n] for s, n in zip(starts.tolist(), response_lens, strict=True)])
    if not config.use_kl_loss:
        assert torch.all(grad_of[zero_weight & (pad(mask) > 0)] == 0)


# ---------------------------------------------------------------------------------------------------------------
# Advantages reweighting and visual sensitivity.
# ---------------------------------------------------------------------------------------------------------------


def test_batch_weights_select_over_the_whole_batch_and_ignore_padding_rows():
    generator = torch.Generator().manual_seed(1)
    lengths = [5, 3, 6, 4]
    mask = [torch.ones(n, dtype=torch.long) for n in lengths]
    mask[2][4:] = 0  # e.g. tool-output tokens inside a response
    entropy = [torch.rand(n, generator=generator) for n in lengths]
    sensitivity = [torch.rand(n, generator=generator) for n in lengths]
    # A padding row full of huge scores must not take any of the selection quota.
    entropy[3] = torch.full((4,), 100.0)
    sensitivity[3] = torch.full((4,), 100.0)
    is_padding = [False, False, False, True]
    cfg = TokenCreditConfig.from_mapping({"other_weight": 0.1})

    # S = |log π_∅ − log π| with log π = 0: the counterfactual log-probs are the sensitivities.
    zeros = [torch.zeros(n) for n in lengths]
    credit = batch_token_credit(cfg, mask, is_padding, entropy, zeros, sensitivity, [True] * 4)
    weights, metrics = credit.weights, credit.metrics

    real = [0, 1, 2]

    def pad(rows_):
        return torch.nn.utils.rnn.pad_sequence(rows_, batch_first=True)

    expected = token_weights(
        cfg, pad([mask[i] for i in real]).bool(), pad([entropy[i] for i in real]),
        torch.zeros(3, 6), pad([sensitivity[i] for i in real]), torch.ones(3, dtype=torch.bool),
    )  # fmt: skip
    expected, expected_metrics = expected.weights, expected.metrics
    for k, i in enumerate(real):
        torch.testing.assert_close(weights[i], expected[k, : lengths[i]])
    assert [len(w) for w in weights] == lengths
    assert torch.all(weights[3] == 0)
    assert torch.all(weights[2][4:] == 0)
    assert metrics == pytest.approx(expected_metrics)


def test_unweighted_advantage_metrics_are_verls_statistics_before_the_weights():
    """The same numbers as veRL's critic/advantages/* (compute_data_metrics) on the unweighted batch."""
    from verl import DataProto
    from verl.trainer.ppo.metric_utils import compute_data_metrics

    advantages = [torch.tensor([0.5, 0.5, 0.5]), torch.tensor([-1.2, -1.2]), torch.tensor([2.0, 2.0, 9.0])]
    mask = [torch.tensor([1, 1, 0]), torch.tensor([1, 1]), torch.tensor([1, 1, 1])]
    is_padding = [False, False, True]  # the padding row's 9.0 must not count
    metrics = unweighted_advantage_metrics(advantages, mask, is_padding)

    def pad(rows_):
        return torch.nn.utils.rnn.pad_sequence(rows_, batch_first=True)

    real = slice(0, 2)
    batch = DataProto.from_dict(
        {
            "advantages": pad(advantages[real]),
            "returns": pad(advantages[real]),
            "response_mask": pad(mask[real]),
            "token_level_scores": pad(advantages[real]),
            "token_level_rewards": pad(advantages[real]),
            "prompts": torch.ones(2, 4, dtype=torch.long),
            "responses": torch.ones(2, 3, dtype=torch.long),
            "attention_mask": torch.cat([torch.ones(2, 4, dtype=torch.long), pad(mask[real])], dim=1),
        }
    )
    verl = compute_data_metrics(batch, use_critic=False)
    for name in ("mean", "max", "min"):
        assert metrics[f"advantages_unweighted/{name}"] == pytest.approx(verl[f"critic/advantages/{name}"])
    assert metrics["advantages_unweighted/mean"] == pytest.approx((0.5 + 0.5 - 1.2 - 1.2) / 4)


def test_images_inside_responses_stop_the_image_removed_pass():
    image_pad, video_pad = 7, 8
    text_only = [torch.tensor([1, 2, 3]), torch.tensor([4, 5])]
    require_no_images_in_responses(text_only, [image_pad, video_pad])
    with_tool_images = [*text_only, torch.tensor([4, image_pad, image_pad, 5]), torch.tensor([video_pad])]
    with pytest.raises(RuntimeError, match="2 of 4 responses of this step hold image or video tokens"):
        require_no_images_in_responses(with_tool_images, [image_pad, video_pad])
    require_no_images_in_responses(with_tool_images, [])  # a text-only model has no placeholders


def test_counterfactual_rows_give_each_image_sample_its_pass_and_the_others_their_own_log_probs():
    old = [torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-0.3, -0.2]), torch.tensor([-4.0])]
    removed = [torch.tensor([-1.5, -1.0, -0.5]), torch.tensor([-6.0])]
    counterfactual, has_image = counterfactual_rows(old, removed, rows=[0, 2])
    assert has_image == [True, False, True]
    for row, expected in zip(counterfactual, [removed[0], old[1], removed[1]], strict=True):
        assert torch.equal(row, expected)
    # ToR's perception score from them: |Δ|, and 0 for the sample without an image.
    credit = batch_token_credit(
        TokenCreditConfig.from_mapping({"reasoning_quantile": 1.0, "perception_quantile": 1.0}),
        [torch.ones(3), torch.ones(2), torch.ones(1)], [False] * 3, [torch.zeros(3), torch.zeros(2), torch.zeros(1)],
        old, counterfactual, has_image,
    )  # fmt: skip
    for row, expected in zip(credit.perception_score, [[0.5, 1.0, 0.0], [0.0, 0.0], [2.0]], strict=True):
        torch.testing.assert_close(row, torch.tensor(expected))


def test_padded_counterfactual_batch_splits_over_data_parallel_ranks_like_verl_dispatch():
    from verl.protocol import BatchData
    from verl.single_controller.base.decorator import _concat_data_proto_or_future

    batch = TensorDict(
        {
            "input_ids": nested_rows([torch.arange(n) for n in (3, 5, 4)]),
            "position_ids": nested_rows([torch.arange(n).expand(4, -1).clone() for n in (3, 5, 4)]),
        },
        batch_size=[3],
    )
    padded = pad_rows_to_multiple(batch, 4)
    assert len(padded) == 4
    chunks = BatchData(padded).chunk(chunks=4)
    assert [len(c) for c in chunks] == [1, 1, 1, 1]
    assert chunks[1]["position_ids"].unbind()[0].shape == (4, 5)
    merged = _concat_data_proto_or_future(chunks)
    assert [t.tolist() for t in merged["input_ids"].unbind()[:3]] == [list(range(n)) for n in (3, 5, 4)]


# ---------------------------------------------------------------------------------------------------------------
# The `tor:` section: bad values stop the run, naming the key.
# ---------------------------------------------------------------------------------------------------------------


def _config(tor=None, **extra):
    base = {
        "algorithm": {"rollout_correction": {"bypass_mode": False}},
        "actor_rollout_ref": {"model": {"use_fused_kernels": False}, "actor": {"strategy": "fsdp2"}},
    }
    if tor is not None:
        base["tor"] = tor
    return OmegaConf.merge(OmegaConf.create(base), OmegaConf.create(extra))


def test_tor_section_defaults_are_the_paper_settings():
    enable, cfg = read_tor_section(_config({"enable": True}))
    assert enable and cfg.method == "tor"
    assert (cfg.reasoning_quantile, cfg.perception_quantile) == (0.3, 0.3)
    assert (cfg.reasoning_weight, cfg.perception_weight, cfg.other_weight) == (1.0, 0.5, 0.0)
    assert cfg.entropy_top_p == 0.95 and cfg.counterfactual == "remove_image"


@pytest.mark.parametrize(
    "tor,key",
    [
        ({"perception_quantile": 1.5}, "tor.perception_quantile"),
        ({"reasoning_quantile": -0.1}, "tor.reasoning_quantile"),
        ({"method": "grpo", "perception_weight": 0.5}, "tor.perception_weight"),  # GRPO has no T_p to weight
        ({"method": "vppo", "reasoning_quantile": 0.3}, "tor.scope"),  # a batch-level T_r with per-response scope
        ({"perception_weight": -0.1}, "tor.perception_weight"),
        ({"other_weight": math.nan}, "tor.other_weight"),
        ({"entropy_top_p": 0.0}, "tor.entropy_top_p"),
        ({"counterfactual": "black_image"}, "tor.counterfactual"),
        ({"perception_wieght": 0.5}, "perception_wieght"),
        ({"enable": "yes"}, "tor.enable"),
    ],
)
def test_bad_tor_values_name_the_key(tor, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        read_tor_section(_config(tor))


def test_every_counterfactual_a_method_can_name_is_built_by_the_trainers_pass():
    from verl_tor.counterfactual import COUNTERFACTUALS as BUILT
    from verl_tor.methods.config import COUNTERFACTUALS as NAMED

    assert set(NAMED) == set(BUILT)
    for method in ("tor", "vppo", "pgpo"):
        assert read_tor_section(_config({"method": method}))[0]


def test_missing_section_and_incompatible_verl_settings_are_named():
    with pytest.raises(ValueError, match="tor_trainer"):
        read_tor_section(_config())
    with pytest.raises(ValueError, match="bypass_mode"):
        read_tor_section(_config({}, algorithm={"rollout_correction": {"bypass_mode": True}}))
    with pytest.raises(ValueError, match="use_fused_kernels"):
        read_tor_section(_config({}, actor_rollout_ref={"model": {"use_fused_kernels": True}}))
    # With veRL's own entropy (top-p 1) fused kernels are fine.
    assert read_tor_section(_config({"entropy_top_p": 1.0}, actor_rollout_ref={"model": {"use_fused_kernels": True}}))[
        0
    ]
    # A disabled section is still validated, but veRL settings do not matter then.
    assert not read_tor_section(_config({"enable": False}, algorithm={"rollout_correction": {"bypass_mode": True}}))[0]


def test_tor_trainer_runs_verls_sync_mode():
    """veRL branches on `trainer_mode == "sync"` (replay buffer, refills, checkpoints); ToR's mode is sync."""
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

    from verl_tor.trainer import ToRTrainer

    trainer = ToRTrainer.__new__(ToRTrainer)
    trainer.config = compose_ppo_config(["trainer.v1.trainer_mode=tor_sync"])
    trainer.trainer_mode = trainer.config.trainer.v1.trainer_mode  # what veRL's __init__ does
    trainer.parameter_sync_step = 1
    assert trainer.trainer_mode == "sync"
    buffer = trainer._build_replay_buffer()
    assert type(buffer) is ReplayBuffer and not isinstance(buffer, ReplayBufferAsync)


@pytest.mark.parametrize("weights", [(1.0, 0.0, 0.0), (0.0, 0.3, 0.3), (1.0, 0.5, 0.5)])
def test_perception_pass_is_skippable_exactly_when_it_changes_no_weight(weights):
    """With γ_p = γ_o the trainer skips the image-removed pass (sensitivity 0): the weights must not change."""
    from verl_tor.trainer import ToRTrainer

    reasoning, perception, other = weights

    def cfg(**gammas):
        return TokenCreditConfig.from_mapping(gammas)

    generator = torch.Generator().manual_seed(3)
    entropy, sensitivity = torch.rand(4, 9, generator=generator), torch.rand(4, 9, generator=generator)
    mask = torch.rand(4, 9, generator=generator) > 0.2
    images = torch.ones(4, dtype=torch.bool)

    def weights_of(config, perception_scores):
        zeros = torch.zeros_like(perception_scores)
        return token_weights(config, mask, entropy, zeros, perception_scores, images).weights

    trainer = ToRTrainer.__new__(ToRTrainer)
    trainer.tor = cfg(reasoning_weight=reasoning, perception_weight=perception, other_weight=other)
    assert not trainer.perception_changes_weights
    # The pass is skipped: every perception score 0 would give the same weights.
    full = TokenCreditConfig.from_mapping({"reasoning_weight": reasoning, "perception_weight": perception + 0.25,
                                           "other_weight": other})  # fmt: skip
    same = dataclasses.replace(full, perception_weight=perception)
    assert torch.equal(weights_of(same, sensitivity), weights_of(same, torch.zeros_like(sensitivity)))
    # With γ_p ≠ γ_o the perception set does matter.
    trainer.tor = full
    assert trainer.perception_changes_weights
    assert not torch.equal(weights_of(full, sensitivity), weights_of(full, torch.zeros_like(sensitivity)))
    # And with γ_p = γ_o but an overlap weight of its own (≠ γ_r), too.
    trainer.tor = cfg(reasoning_weight=reasoning, perception_weight=perception, other_weight=other,
                      overlap_weight=reasoning + 0.5)  # fmt: skip
    assert trainer.perception_changes_weights
    assert not torch.equal(weights_of(trainer.tor, sensitivity), weights_of(trainer.tor, torch.zeros_like(sensitivity)))


# ---------------------------------------------------------------------------------------------------------------
# Every trainer mode: the image-removed pass uses the weights of the old-log-prob forward.
# ---------------------------------------------------------------------------------------------------------------


class _WeightsTrackingWorkerGroup:
    """The calls veRL's trainers make on the actor worker group, tracking which weights each forward used.

    ``separate_async`` keeps π_old (the weights at the start of a sync cycle) on CPU and restores it for the
    old-log-prob forward of every later local update, then puts the current weights back."""

    def __init__(self, current: str):
        self.weights, self.saved, self.forwards = current, {}, []

    def compute_log_prob(self, data):
        self.forwards.append((data, self.weights))
        return data

    def save_model_to_cpu(self, slot):
        self.saved[slot] = self.weights

    def restore_model_from_cpu(self, slot):
        self.weights = self.saved[slot]

    def clear_cpu_model(self, slot):
        del self.saved[slot]


@pytest.mark.parametrize("mode", ["sync", "colocate_async", "separate_async"])
@pytest.mark.parametrize("local_update", [0, 1])
def test_image_removed_pass_runs_with_the_old_log_prob_weights_in_every_mode(mode, local_update, monkeypatch):
    """veRL's own ``_compute_old_log_prob`` of each mode (its weight handling included) with ToR's hook: the
    image-removed forward follows the old-log-prob forward on the same weights, and the hook is gone afterwards."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer, get_trainer_cls

    def verl_old_log_prob_forward(self, batch, metrics):  # the part of veRL's base step that runs the forward
        self.actor_rollout_wg.compute_log_prob("old log-probs")
        return batch

    monkeypatch.setattr(PPOTrainer, "_compute_old_log_prob", verl_old_log_prob_forward)
    trainer_cls = get_trainer_cls(f"tor_{mode}")
    trainer = trainer_cls.__new__(trainer_cls)
    trainer.config = compose_ppo_config([])
    trainer.tor_enabled, trainer.tor = True, TokenCreditConfig()
    trainer.timing_raw, trainer.local_trigger_step = {}, local_update
    group = _WeightsTrackingWorkerGroup("pi_old" if local_update == 0 else "current")
    group.saved[0] = "pi_old"  # separate_async saved π_old at the cycle's first update
    trainer.actor_rollout_wg = group

    def image_removed_pass(self, batch, metrics, forward):
        forward("image removed")

    monkeypatch.setattr(trainer_cls, "_compute_counterfactual_log_probs", image_removed_pass)
    batch = KVBatchMeta(keys=["a"], tags=[{}])
    assert trainer._compute_old_log_prob(batch, {}) is batch
    expected = "pi_old" if mode == "separate_async" or local_update == 0 else "current"
    assert group.forwards == [("old log-probs", expected), ("image removed", expected)]
    assert group.compute_log_prob == group.__class__.compute_log_prob.__get__(group)
    if mode == "separate_async":
        assert group.weights == ("pi_old" if local_update == 0 else "current")  # veRL put its weights back


def _validated_tor_config(tiny_model_dir, overrides):
    """veRL's own start-up validation (with the plugin's checks attached) of a ``tor_trainer`` CPU run."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from verl.trainer.main_ppo import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from verl_tor.testing.cpu_overrides import cpu_overrides

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="verl_tor.config", version_base=None):
        config = compose("tor_trainer", overrides=cpu_overrides(tiny_model_dir, ".", ".") + overrides)
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["trainer.use_v1=false"], "trainer.use_v1"),  # veRL's legacy trainer never reads trainer.v1.trainer_mode
        (["trainer.v1.trainer_mode=sync"], "trainer.v1.trainer_mode"),  # veRL's own trainer ignores `tor:`
    ],
)
def test_settings_that_would_silently_turn_tor_off_stop_at_start_up(tiny_model_dir, overrides, key):
    _validated_tor_config(tiny_model_dir, [])  # the same run otherwise passes veRL's validation
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        _validated_tor_config(tiny_model_dir, overrides)
    # Asked for explicitly, a run without ToR is fine.
    _validated_tor_config(tiny_model_dir, overrides + ["tor.enable=false"])
