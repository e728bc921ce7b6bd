"""The ``hf`` rollout server: registration, sampling parameters, log-probs, batching and weight updates.

Generation runs for every model family of ``tiny_families.ENGINE_FAMILIES`` (images included; Qwen3.5's
linear-attention layers with left padding); the family-independent server logic for Qwen2.5-VL only.
"""

import asyncio

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_families import ENGINE_FAMILIES

SAMPLE = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}
GREEDY = {**SAMPLE, "temperature": 0}


def _rollout_config(**overrides):
    from verl.workers.config import RolloutConfig

    kwargs = {"name": "hf", "prompt_length": 128, "response_length": 6, "dtype": "float32"}
    kwargs.update({"tensor_model_parallel_size": 1, **overrides})
    return RolloutConfig(**kwargs)


@pytest.fixture(scope="module", params=ENGINE_FAMILIES)
def model_config(request, tiny_model_dirs):
    from verl.workers.config import HFModelConfig

    return HFModelConfig(path=tiny_model_dirs[request.param])


QWEN2_5_VL_ONLY = pytest.mark.families("qwen2_5_vl")


@pytest.fixture
def server(model_config):
    from verl_tor.cpu.rollout_hf.server import HFRolloutServer

    return HFRolloutServer(_rollout_config(), model_config)


@pytest.fixture(scope="module")
def image_prompt(model_config):
    """(prompt ids with the expanded image tokens, [image]) as veRL's agent loop sends them."""
    image = Image.fromarray(np.full((56, 56, 3), (220, 30, 30), dtype=np.uint8))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it?"}]}]
    text = model_config.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = model_config.processor(text=[text], images=[image], return_tensors="pt")["input_ids"][0].tolist()
    return ids, [image]


@pytest.fixture(scope="module")
def text_prompt(model_config):
    messages = [{"role": "user", "content": "The colour is blue. What colour is it?"}]
    text = model_config.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return model_config.tokenizer(text)["input_ids"], None


def _generate(server, prompt, params, n=1):
    """``n`` concurrent requests, as veRL's agent loop sends the n responses of a prompt."""
    ids, images = prompt

    async def requests():
        calls = [server.generate(ids, dict(params), f"r{i}", image_data=images) for i in range(n)]
        return await asyncio.gather(*calls)

    return asyncio.run(requests())


def _reference_log_probs(server, prompt, response, temperature=1.0):
    """Log-probs of ``response`` from one forward pass over prompt + response (banned ids excluded)."""
    ids, images = prompt
    inputs = server._model_inputs([(ids + response, images)])
    with torch.no_grad():
        logits = server.model(**inputs).logits[0, len(ids) - 1 : -1].float()
    logits[:, server.banned_token_ids] = float("-inf")
    log_probs = torch.log_softmax(logits / temperature, dim=-1)
    return log_probs.gather(-1, torch.tensor(response)[:, None])[:, 0]


def test_hf_rollout_registered():
    from verl.workers.rollout.base import get_rollout_class
    from verl.workers.rollout.replica import get_rollout_replica_class

    from verl_tor.cpu.rollout_hf.server import HFReplica, HFServerAdapter

    assert get_rollout_replica_class("hf") is HFReplica
    assert get_rollout_class("hf", "async") is HFServerAdapter


def test_max_new_tokens_like_vllm():
    from verl_tor.cpu.rollout_hf.server import max_new_tokens

    config = _rollout_config(prompt_length=10, response_length=6)
    assert max_new_tokens(config, 4, {}) == 6
    assert max_new_tokens(config, 12, {}) == 4  # a long prompt leaves less of the total budget
    assert max_new_tokens(config, 15, {}) == 1
    assert max_new_tokens(config, 4, {"max_tokens": 2}) == 2
    assert max_new_tokens(config, 4, {"max_new_tokens": 3}) == 3
    with pytest.raises(ValueError):
        max_new_tokens(config, 16, {})


def test_greedy_is_deterministic_and_matches_hf_greedy(server, image_prompt):
    first, second = _generate(server, image_prompt, GREEDY, n=2)
    assert first.token_ids == second.token_ids
    ids, images = image_prompt
    inputs = server._model_inputs([(ids, images)])
    reference = server.model.generate(
        **inputs, do_sample=False, max_new_tokens=6, suppress_tokens=server.banned_token_ids, pad_token_id=0
    )
    assert first.token_ids == reference[0, len(ids) :].tolist()[: len(first.token_ids)]
    assert first.stop_reason == "completed"


@pytest.mark.families("qwen2_5_vl", "qwen3_5")  # Qwen3.5: log-probs of the cached linear-attention steps
def test_sampling_log_probs_match_a_forward_pass(server, image_prompt):
    for temperature in (1.0, 0.7):
        (output,) = _generate(server, image_prompt, {**SAMPLE, "temperature": temperature})
        expected = _reference_log_probs(server, image_prompt, output.token_ids, temperature)
        torch.testing.assert_close(torch.tensor(output.log_probs), expected, atol=1e-4, rtol=1e-4)


@QWEN2_5_VL_ONLY
def test_n_requests_sample_independently(server, image_prompt):
    outputs = _generate(server, image_prompt, SAMPLE, n=8)
    assert len({tuple(output.token_ids) for output in outputs}) > 1
    top_k_one = _generate(server, image_prompt, {**SAMPLE, "top_k": 1}, n=3)
    (greedy,) = _generate(server, image_prompt, GREEDY)
    assert all(output.token_ids == greedy.token_ids for output in top_k_one)


@QWEN2_5_VL_ONLY
def test_response_budget_and_eos(model_config, image_prompt):
    from verl_tor.cpu.rollout_hf.server import HFRolloutServer

    server = HFRolloutServer(_rollout_config(response_length=3, ignore_eos=True), model_config)
    outputs = _generate(server, image_prompt, SAMPLE, n=4)
    assert all(len(output.token_ids) == 3 for output in outputs)
    (short,) = _generate(server, image_prompt, {**SAMPLE, "max_tokens": 1})
    assert len(short.token_ids) == 1
    # With EOS honoured, a response that ends does so with the EOS token, and nothing follows it.
    server = HFRolloutServer(_rollout_config(response_length=3), model_config)
    eos = server.eos_token_ids[0]
    server.model.lm_head.bias = torch.nn.Parameter(torch.zeros(server.model.lm_head.out_features))
    with torch.no_grad():
        server.model.lm_head.bias[eos] = 100.0
    (ended,) = _generate(server, image_prompt, SAMPLE)
    assert ended.token_ids == [eos]


def test_batched_requests_match_one_by_one(server, image_prompt, text_prompt):
    """Concurrent requests (images and text-only, different lengths) are sampled in one left-padded batch."""
    one_by_one = [_generate(server, prompt, GREEDY)[0] for prompt in (image_prompt, text_prompt)]

    async def together():
        calls = [
            server.generate(prompt[0], dict(GREEDY), str(i), image_data=prompt[1])
            for i, prompt in enumerate([image_prompt, text_prompt] * 3)
        ]
        return await asyncio.gather(*calls)

    batched = asyncio.run(together())
    for i, output in enumerate(batched):
        expected = one_by_one[i % 2]
        assert output.token_ids == expected.token_ids
        torch.testing.assert_close(output.log_probs, expected.log_probs, atol=1e-4, rtol=1e-4)


@QWEN2_5_VL_ONLY
def test_weight_update_changes_outputs(server, image_prompt, model_config):
    from transformers import AutoModelForImageTextToText

    (before,) = _generate(server, image_prompt, GREEDY)
    other = AutoModelForImageTextToText.from_pretrained(model_config.local_path)
    torch.manual_seed(1)
    with torch.no_grad():
        other.lm_head.weight.normal_()
    asyncio.run(server.update_weights(other.state_dict()))
    asyncio.run(server.set_global_steps(7))
    (after,) = _generate(server, image_prompt, GREEDY)
    assert after.token_ids != before.token_ids
    assert after.extra_fields["global_steps"] == 7
    torch.testing.assert_close(server.model.lm_head.weight, other.lm_head.weight)
    with pytest.raises(KeyError):
        asyncio.run(server.update_weights({"not.a.weight": torch.zeros(1)}))


@QWEN2_5_VL_ONLY
def test_adapter_forwards_weights_to_its_server(model_config, monkeypatch):
    """Worker side: every rank drains the weight generator; only the replica's first rank sends."""
    from verl_tor.cpu.rollout_hf import server as server_module

    class FakeServer:
        def __init__(self):
            self.calls = []
            self.update_weights = self._method("update_weights")
            self.set_global_steps = self._method("set_global_steps")

        def _method(self, name):
            class Remote:
                @staticmethod
                async def remote(*args):
                    self.calls.append((name, args))

            return Remote

    fake = FakeServer()
    monkeypatch.setattr(server_module.ray, "get_actor", lambda name: fake if name == "hf_server_0" else None)
    drained = []

    def weights():
        for name in ("a", "b"):
            drained.append(name)
            yield name, torch.ones(2)

    for rank in ("0", "1"):  # the two ranks of one replica (rollout tensor parallel size 2)
        monkeypatch.setenv("RANK", rank)
        adapter = server_module.HFServerAdapter(_rollout_config(tensor_model_parallel_size=2), model_config, None)
        asyncio.run(adapter.update_weights(weights(), global_steps=3))
    assert drained == ["a", "b", "a", "b"]
    assert [name for name, _ in fake.calls] == ["update_weights", "set_global_steps"]
    assert sorted(fake.calls[0][1][0]) == ["a", "b"]


def test_suppress_vision_tokens_option(model_config):
    from verl_tor.cpu.rollout_hf.server import HFRolloutServer

    tokenizer = model_config.tokenizer
    vision = {tokenizer.convert_tokens_to_ids(token) for token in ("<|vision_start|>", "<|vision_end|>")}
    placeholders = {tokenizer.convert_tokens_to_ids(token) for token in ("<|image_pad|>", "<|video_pad|>")}
    default = HFRolloutServer(_rollout_config(), model_config)
    assert placeholders <= set(default.banned_token_ids) and not vision & set(default.banned_token_ids)
    config = _rollout_config(engine_kwargs={"hf": {"suppress_vision_tokens": True}})
    assert vision | placeholders <= set(HFRolloutServer(config, model_config).banned_token_ids)
