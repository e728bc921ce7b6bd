"""Which tiny model families (rows of ``verl_tor.testing.tiny_model.FAMILIES``) the engine-level tests run.

Qwen3.5-MoE goes through exactly Qwen3.5's code in veRL (same forward, decoder layer and linear attention patches)
and is covered by the builder and family-table tests only, to keep the suite's time down.
"""

ENGINE_FAMILIES = ("qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5")
