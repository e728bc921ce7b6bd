"""Hydra configs of verl-tor (``--config-path=pkg://verl_tor.config --config-name=tor_trainer``)."""
