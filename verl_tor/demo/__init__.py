"""CPU demo: GRPO vs GRPO+ToR through veRL's real trainers on a tiny Qwen2.5-VL (``python -m verl_tor.demo``)."""
