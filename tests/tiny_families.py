"""Which tiny model families (rows of ``verl_tor.testing.tiny_model.FAMILIES``) the engine-level tests run: all."""

ENGINE_FAMILIES = ("qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe")
