"""A user's own veRL config (veRL's stock ``ppo_trainer``, not ours) turns ToR on with the keys the README lists."""

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra


def _validate(tiny_model_dir: str, overrides: list[str]):
    """veRL's stock config with ``overrides``, through veRL's own start-up validation (our checks attached)."""
    from verl.trainer.main_ppo import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from verl_tor.testing.cpu_overrides import cpu_overrides

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        config = compose("ppo_trainer", overrides=cpu_overrides(tiny_model_dir, ".", ".") + overrides)
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    return config


def test_the_readme_keys_turn_tor_on_in_verls_stock_config(tiny_model_dir):
    from verl_tor.config_checks import read_tor_section

    config = _validate(tiny_model_dir, ["trainer.v1.trainer_mode=tor_sync", "+tor.perception_weight=0.5"])
    enable, tor = read_tor_section(config)
    assert enable and tor.perception_weight == 0.5 and tor.reasoning_quantile == 0.3


def test_a_tor_mode_without_a_tor_section_or_a_section_without_the_mode_stops(tiny_model_dir):
    with pytest.raises(ValueError, match="tor_trainer"):
        _validate(tiny_model_dir, ["trainer.v1.trainer_mode=tor_sync"])
    with pytest.raises(ValueError, match=r"trainer\.v1\.trainer_mode"):
        _validate(tiny_model_dir, ["+tor.perception_weight=0.5"])
