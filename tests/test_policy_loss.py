"""Where ToR's token weights go for each of veRL's policy losses, established by running every registered loss.

For a loss mode, "weighting the advantage" (A → w·A) and "weighting the token's loss" (veRL's own per-token loss
multiplier ``rollout_is_weights`` = w) must give the same loss and gradient exactly when ``verl_tor.policy_loss``
sends that mode's weights through the advantages; for the others they must differ, which is why those take the
multiplier (or are refused).
"""

import copy
import functools

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict

from verl_tor.config_checks import read_tor_section
from verl_tor.nested import nested_rows
from verl_tor.policy_loss import UNSUPPORTED_LOSS_MODES, WEIGHT_TARGETS, weight_target
from verl_tor.steps import apply_token_weights
from verl_tor.testing.actor_engine import compose_ppo_config

LOSS_AGG_MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]
# Needs veRL's rollout-correction section in the actor config, and ToR refuses it at start-up anyway (see below).
NOT_RUN = {"bypass_mode"}


def _registry() -> dict:
    from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY

    return POLICY_LOSS_REGISTRY


@functools.cache
def _composed_actor_section():
    actor = "actor_rollout_ref.actor"
    config = compose_ppo_config(
        [
            f"{actor}.policy_loss.dro_beta=0.3",
            # Real runs clip or penalise 0.02 % of ~10^6 tokens; here 20 % of ~50 (from a wider covariance band),
            # so that several are.
            f"{actor}.policy_loss.clip_cov_ratio=0.2",
            f"{actor}.policy_loss.clip_cov_lb=0.1",
            f"{actor}.policy_loss.kl_cov_ratio=0.2",
            f"{actor}.clip_ratio_low=0.2",
            f"{actor}.clip_ratio_high=0.28",
            f"{actor}.ppo_micro_batch_size_per_gpu=2",
            f"{actor}.ppo_mini_batch_size=2",
        ]
    )
    return config.actor_rollout_ref.actor


def _actor_config(loss_mode: str, loss_agg_mode: str = "token-mean"):
    """veRL's ActorConfig with the loss mode and aggregation (one Hydra composition for the module)."""
    from verl.utils.config import omega_conf_to_dataclass

    section = copy.deepcopy(_composed_actor_section())
    section.policy_loss.loss_mode = loss_mode
    section.loss_agg_mode = loss_agg_mode
    return omega_conf_to_dataclass(section)


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """`[B, T]` tensors: old and current log-probs far enough apart to hit every clip, token-varying advantages
    (covariances past clip_cov's bounds), ToR-like weights in {0, 0.5, 1} and some masked tokens."""
    generator = torch.Generator().manual_seed(seed)
    shape = (6, 9)
    old = torch.randn(shape, generator=generator).mul(0.5).sub(1.5).clamp(max=-0.05)
    current = old + torch.randn(shape, generator=generator) * 0.6
    advantages = torch.randn(shape[0], 1, generator=generator) * 2 + torch.randn(shape, generator=generator)
    weights = torch.tensor([0.0, 0.5, 1.0])[torch.randint(0, 3, shape, generator=generator)]
    mask = torch.rand(shape, generator=generator) > 0.15
    return {"old": old, "current": current, "advantages": advantages, "weights": weights, "mask": mask}


def _loss_and_grad(loss_fn, config, batch, advantages, rollout_is_weights):
    leaf = batch["current"].clone().requires_grad_(True)
    torch.manual_seed(0)  # clip_cov draws the tokens it clips at random: the same draw for both forms
    loss, _ = loss_fn(
        old_log_prob=batch["old"],
        log_prob=leaf,
        advantages=advantages,
        response_mask=batch["mask"],
        loss_agg_mode=config.loss_agg_mode,
        config=config,
        rollout_is_weights=rollout_is_weights,
    )
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


def test_every_registered_loss_mode_is_classified():
    """A loss mode veRL adds later must be looked at (and is refused at start-up until then)."""
    assert set(_registry()) == set(WEIGHT_TARGETS) | set(UNSUPPORTED_LOSS_MODES)


@pytest.mark.parametrize("loss_agg_mode", LOSS_AGG_MODES)
@pytest.mark.parametrize("loss_mode", sorted(set(WEIGHT_TARGETS) | set(UNSUPPORTED_LOSS_MODES) - NOT_RUN))
def test_weighting_the_advantage_is_weighting_the_loss_exactly_for_the_advantage_modes(loss_mode, loss_agg_mode):
    config = _actor_config(loss_mode, loss_agg_mode)
    loss_fn = _registry()[loss_mode]
    batch = _batch()
    via_advantage = _loss_and_grad(loss_fn, config, batch, batch["advantages"] * batch["weights"], None)
    via_multiplier = _loss_and_grad(loss_fn, config, batch, batch["advantages"], batch["weights"])
    same = all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(via_advantage, via_multiplier, strict=True))
    takes_advantage_weights = WEIGHT_TARGETS.get(loss_mode) == "advantages"
    assert same == takes_advantage_weights, (loss_mode, via_advantage[0], via_multiplier[0])


def test_the_loss_modes_weight_through_verls_ppo_loss_like_a_weighted_per_token_loss():
    """ToR's fields for a "loss" mode (DRO here) through veRL's real ``ppo_loss``: the loss and gradient of
    Σ w·ℓ_t / N with DRO's per-token loss ℓ_t = −(log π·A − β/2·(log π − log π_old)²), written out in float64."""
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.losses import ppo_loss

    config = _actor_config("dro")
    assert weight_target("dro") == "loss"
    batch = _batch(seed=1)
    lengths = batch["mask"].sum(dim=-1).tolist()
    rows = [slice(0, n) for n in lengths]  # the kept tokens of each row, as a ragged batch

    def ragged(tensor):
        return [tensor[i][rows[i]] for i in range(len(rows))]

    weights, advantages = ragged(batch["weights"]), ragged(batch["advantages"])
    fields = apply_token_weights("loss", weights, advantages)
    assert set(fields) == {"rollout_is_weights"}
    # veRL's model output: log-probs over prompt + response, left-shifted by one (value at t predicts t + 1).
    prompt_length = 2
    current = ragged(batch["current"])
    values = [torch.cat([torch.zeros(prompt_length - 1), lp, torch.zeros(1)]) for lp in current]
    leaf = torch.cat(values).requires_grad_(True)
    offsets = torch.tensor([0] + torch.cumsum(torch.tensor([len(v) for v in values]), 0).tolist())
    data = TensorDict(
        {
            "prompts": nested_rows([torch.ones(prompt_length, dtype=torch.long) for _ in rows]),
            "responses": nested_rows([torch.ones(n, dtype=torch.long) for n in lengths]),
            "response_mask": nested_rows([torch.ones(n, dtype=torch.long) for n in lengths]),
            "old_log_probs": nested_rows(ragged(batch["old"])),
            "advantages": nested_rows(advantages),
            "rollout_is_weights": nested_rows(fields["rollout_is_weights"]),
        },
        batch_size=[len(rows)],
    )
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=sum(lengths), global_batch_size=len(rows))
    loss, _ = ppo_loss(config, {"log_probs": torch.nested.nested_tensor_from_jagged(leaf, offsets)}, data)
    (verl_grad,) = torch.autograd.grad(loss, leaf)

    reference_leaf = leaf.detach().double().requires_grad_(True)
    starts = offsets[:-1] + prompt_length - 1
    reference = 0.0
    for i, n in enumerate(lengths):
        log_prob = reference_leaf[starts[i] : starts[i] + n]
        log_ratio = log_prob - ragged(batch["old"])[i].double()
        per_token = -(log_prob * advantages[i].double() - 0.5 * 0.3 * log_ratio**2)
        reference = reference + (weights[i].double() * per_token).sum()
    reference = reference / sum(lengths)
    (reference_grad,) = torch.autograd.grad(reference, reference_leaf)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    torch.testing.assert_close(verl_grad.double(), reference_grad, rtol=1e-5, atol=1e-7)


def test_loss_target_multiplies_verls_rollout_correction_weights():
    weights = [torch.tensor([1.0, 0.0, 0.5])]
    verl_weights = [torch.tensor([0.9, 1.1, 2.0])]
    advantages = [torch.tensor([1.0, 1.0, 1.0])]
    fields = apply_token_weights("loss", weights, advantages, verl_weights)
    torch.testing.assert_close(fields["rollout_is_weights"][0], torch.tensor([0.9, 0.0, 1.0]))
    fields = apply_token_weights("advantages", weights, advantages)
    assert set(fields) == {"advantages"}
    torch.testing.assert_close(fields["advantages"][0], torch.tensor([1.0, 0.0, 0.5]))


def _config(**sections):
    base = {
        "algorithm": {"rollout_correction": {"bypass_mode": False}, "use_kl_in_reward": False},
        "actor_rollout_ref": {
            "model": {"use_fused_kernels": False},
            "actor": {"strategy": "fsdp2", "policy_loss": {"loss_mode": "vanilla"}},
        },
        "tor": {"enable": True},
    }
    return OmegaConf.merge(OmegaConf.create(base), OmegaConf.create(sections))


@pytest.mark.parametrize("loss_mode", sorted(UNSUPPORTED_LOSS_MODES) + ["a_mode_from_some_plugin"])
def test_loss_modes_without_a_per_token_loss_stop_at_start_up_naming_the_key(loss_mode):
    config = _config(actor_rollout_ref={"actor": {"policy_loss": {"loss_mode": loss_mode}}})
    with pytest.raises(ValueError, match=r"actor_rollout_ref\.actor\.policy_loss\.loss_mode=" + loss_mode):
        read_tor_section(config)
    # The same config without ToR's reweighting is veRL's business.
    config.tor.enable = False
    assert read_tor_section(config)[0] is False


@pytest.mark.parametrize("loss_mode", sorted(WEIGHT_TARGETS))
def test_supported_loss_modes_pass_the_start_up_check(loss_mode):
    config = _config(actor_rollout_ref={"actor": {"policy_loss": {"loss_mode": loss_mode}}})
    assert read_tor_section(config)[0] is True


def test_kl_in_reward_stops_at_start_up_naming_the_key():
    with pytest.raises(ValueError, match=r"algorithm\.use_kl_in_reward"):
        read_tor_section(_config(algorithm={"use_kl_in_reward": True}))
