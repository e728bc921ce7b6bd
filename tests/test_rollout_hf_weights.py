"""The hf rollout loads the weights veRL's checkpoint engine streams, MoE experts included."""

import pytest
import torch

from verl_tor.cpu.rollout_hf.weights import pack_expert_weights


@pytest.mark.parametrize("family", ["qwen3_vl_moe", "qwen3_vl"])
def test_packing_undoes_verls_unpacking_of_moe_experts(family, tiny_model_dirs):
    """veRL's own ``unfuse_moe_params`` (what its FSDP engine sends the rollout), then ours: the model's state dict,
    exactly; a dense model's passes through unchanged."""
    from transformers import AutoModelForImageTextToText
    from verl.workers.engine.fsdp.utils import unfuse_moe_params

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs[family])
    state = model.state_dict()
    streamed = dict(unfuse_moe_params(state.items(), model_type=model.config.model_type))
    assert (streamed.keys() != state.keys()) == (family == "qwen3_vl_moe")
    packed = pack_expert_weights(streamed)
    assert packed.keys() == state.keys()
    assert all(torch.equal(packed[name], state[name]) for name in state)
