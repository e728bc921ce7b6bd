"""The ``hf`` rollout server: registration, sampling parameters, log-probs, batching, weight updates, and the
abort/park/resume protocol of veRL's partial rollout (driven by veRL's own client, replica and load balancer).

Generation runs for every model family of ``tiny_families.ENGINE_FAMILIES`` (images included; Qwen3.5's
linear-attention layers with left padding); the family-independent server logic for Qwen2.5-VL only.
"""

import asyncio
import concurrent.futures
import contextlib
import copy
import inspect
import time
from types import SimpleNamespace

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


def _reference_distributions(server, prompt, response, temperature=1.0, model=None):
    """Log-softmax at every response position from one forward pass of ``model`` (default: the server's) over
    prompt + response (banned ids excluded)."""
    ids, images = prompt
    inputs = server._model_inputs([(ids + response, images)])
    with torch.no_grad():
        logits = (model or server.model)(**inputs).logits[0, len(ids) - 1 : -1].float()
    logits[:, server.banned_token_ids] = float("-inf")
    return torch.log_softmax(logits / temperature, dim=-1)


def _reference_log_probs(server, prompt, response, temperature=1.0, model=None):
    """Log-probs of ``response`` from one forward pass over prompt + response (banned ids excluded)."""
    log_probs = _reference_distributions(server, prompt, response, temperature, model)
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


def _seeded_server(model_config, seed=0, max_batch_size=64):
    from verl_tor.cpu.rollout_hf.server import HFRolloutServer

    hf = {"seeded_sampling": True, "max_batch_size": max_batch_size}
    return HFRolloutServer(_rollout_config(seed=seed, engine_kwargs={"hf": hf}), model_config)


def _colour_prompts(model_config, colours):
    """(prompt ids, [image]) of one question about a solid picture of each colour: same ids, different pixels."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it?"}]}]
    text = model_config.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompts = []
    for colour in colours:
        image = Image.fromarray(np.full((56, 56, 3), colour, dtype=np.uint8))
        ids = model_config.processor(text=[text], images=[image], return_tensors="pt")["input_ids"][0].tolist()
        prompts.append((ids, [image]))
    return prompts


def _responses_in_order(server, prompts, order, params=SAMPLE):
    """Send ``prompts`` concurrently in ``order`` (one request per entry); the responses by prompt position."""

    async def requests():
        calls = [
            server.generate(prompts[i][0], dict(params), f"r{k}", image_data=prompts[i][1]) for k, i in enumerate(order)
        ]
        return await asyncio.gather(*calls)

    outputs = asyncio.run(requests())
    by_prompt = {}
    for i, output in zip(order, outputs, strict=True):
        by_prompt.setdefault(i, []).append(tuple(output.token_ids))
    return {i: sorted(responses) for i, responses in by_prompt.items()}


@QWEN2_5_VL_ONLY
def test_seeded_sampling_gives_the_same_responses_whatever_the_batching_and_arrival_order(model_config):
    """The n responses of each prompt are the same set when the requests arrive in another order and are sampled
    in other batches; another seed or another step gives other responses; prompts differing only in their
    pixels get different draws."""
    prompts = _colour_prompts(model_config, [(220, 30, 30), (30, 60, 220), (30, 170, 50)])
    order = [i for i in range(len(prompts)) for _ in range(4)]  # 4 responses per prompt, grouped like veRL's
    first = _responses_in_order(_seeded_server(model_config), prompts, order)
    shuffled = list(np.random.default_rng(0).permutation(order))
    assert _responses_in_order(_seeded_server(model_config, max_batch_size=5), prompts, shuffled) == first
    one_by_one = _seeded_server(model_config, max_batch_size=1)
    assert _responses_in_order(one_by_one, prompts, order[::-1]) == first
    assert len({response for responses in first.values() for response in responses}) > 4
    assert _responses_in_order(_seeded_server(model_config, seed=1), prompts, order) != first
    next_step = _seeded_server(model_config)
    asyncio.run(next_step.set_global_steps(2))
    assert _responses_in_order(next_step, prompts, order) != first


@QWEN2_5_VL_ONLY
def test_seeded_sampling_draws_from_the_warped_distribution(model_config):
    """First-token frequencies over many seeded requests match transformers' warped distribution (temperature,
    top-k, top-p), computed from the logits of one forward pass; log-probs stay those of the unwarped
    temperature distribution."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    server = _seeded_server(model_config)
    (prompt,) = _colour_prompts(model_config, [(220, 30, 30)])
    with torch.no_grad():  # a sharper distribution than the random model's, so that top-k and top-p cut
        server.model.lm_head.weight.mul_(20.0)
    inputs = server._model_inputs([prompt])
    with torch.no_grad():
        logits = server.model(**inputs).logits[:, -1].float()
    logits[:, server._banned] = float("-inf")
    n = 3000
    for temperature, top_k, top_p in ((1.0, -1, 1.0), (0.7, 5, 0.8)):
        params = {**SAMPLE, "temperature": temperature, "top_k": top_k, "top_p": top_p, "max_tokens": 1}
        counts = torch.zeros(logits.shape[-1])
        for response in _responses_in_order(server, [prompt], [0] * n, params)[0]:
            counts[response[0]] += 1
        warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
        warpers += [TopKLogitsWarper(top_k)] if top_k > 0 else []
        warpers += [TopPLogitsWarper(top_p)] if top_p < 1 else []
        expected = torch.softmax(warpers(inputs["input_ids"], logits.clone()), dim=-1)[0]
        assert counts[expected == 0].sum() == 0
        # Each frequency within 4 binomial standard deviations (plus a little) of its probability.
        tolerance = 4 * (expected * (1 - expected) / n).sqrt() + 2 / n
        assert ((counts / n - expected).abs() <= tolerance).all(), (counts / n, expected)
        (one,) = _generate(server, prompt, {**params, "max_tokens": 3})
        reference = _reference_log_probs(server, prompt, one.token_ids, temperature)
        torch.testing.assert_close(torch.tensor(one.log_probs), reference, atol=1e-4, rtol=1e-4)


class _InProcessActor:
    """A Ray actor handle for an object of this process, as veRL's code uses one: ``handle.method.remote(...)``
    starts the call at once on copies of its arguments (Ray sends them serialized) and returns an awaitable.
    Records the ``generate`` calls it forwards."""

    def __init__(self, target):
        self._target = target
        self.generate_calls = []

    def __getattr__(self, name):
        method = getattr(self._target, name)

        def remote(*args, **kwargs):
            args, kwargs = copy.deepcopy((args, kwargs))
            if name == "generate":
                self.generate_calls.append(kwargs)
            result = method(*args, **kwargs)
            if inspect.iscoroutine(result):
                return asyncio.ensure_future(result)
            done = asyncio.get_running_loop().create_future()
            done.set_result(result)
            return done

        return SimpleNamespace(remote=remote)


def _partial_rollout_setup(model_config, response_length=8):
    """A server, veRL's replica fanning out to it, and veRL's fully-async client routed to it by veRL's balancer."""
    from omegaconf import OmegaConf
    from verl.workers.rollout.llm_server import FullyAsyncLLMServerClient
    from verl.workers.rollout.router import GlobalRequestLoadBalancer

    from verl_tor.cpu.rollout_hf.server import HFReplica, HFRolloutServer

    config = _rollout_config(response_length=response_length)
    server = HFRolloutServer(config, model_config)
    handle = _InProcessActor(server)
    replica = HFReplica(replica_rank=0, config=config, model_config=model_config)
    replica.servers = [handle]
    client_config = OmegaConf.create(
        {"actor_rollout_ref": {"rollout": {"name": "hf", "response_length": response_length}}}
    )
    balancer = GlobalRequestLoadBalancer({"hf_server_0": handle})
    client = FullyAsyncLLMServerClient(client_config, load_balancer_handle=_InProcessActor(balancer))
    return server, handle, replica, client


@contextlib.contextmanager
def _at_token(server, token, action, until=None, timeout=10.0):
    """Once the server's model has computed the ``token``-th token (counted over every generation inside the
    block), run ``action()`` on the event loop and hold the generation there until ``until()`` holds (default:
    the action finished), for at most ``timeout`` seconds. Yields an awaitable of the action's result."""
    loop = asyncio.get_running_loop()
    result = concurrent.futures.Future()
    forwards = 0

    def hook(module, args, output):
        nonlocal forwards
        forwards += 1
        if forwards != token:
            return
        started = asyncio.run_coroutine_threadsafe(action(), loop)
        started.add_done_callback(
            lambda done: (
                result.set_exception(done.exception()) if done.exception() else result.set_result(done.result())
            )
        )
        deadline = time.monotonic() + timeout
        while not (until() if until else started.done()) and time.monotonic() < deadline:
            time.sleep(0.005)

    hook_handle = server.model.register_forward_hook(hook)
    try:
        yield asyncio.wrap_future(result)
    finally:
        hook_handle.remove()


def _aborted(server):
    # The abort has begun (the gate is closed): from here the running generation ends after its current token.
    return server._paused


@QWEN2_5_VL_ONLY
def test_abort_returns_partial_responses_with_their_log_probs(model_config, image_prompt):
    """An abort during the 3rd token of a group: its rows end with 3 tokens, their log-probs those of a forward pass
    over prompt + partial; an earlier group keeps its full response; a group not started returns nothing."""
    server, _, replica, _ = _partial_rollout_setup(model_config)
    ids, images = image_prompt

    async def run():
        # Three groups in this order: 2 tokens (2 forwards), then 2 sampled rows, then a greedy row.
        requests = [("short", {**SAMPLE, "max_tokens": 2}), ("a", SAMPLE), ("b", SAMPLE), ("greedy", GREEDY)]
        calls = [server.generate(ids, dict(params), name, image_data=images) for name, params in requests]
        with _at_token(
            server, 2 + 3, lambda: server.abort_all_requests(reject_request=False), until=lambda: _aborted(server)
        ) as abort:
            outputs = await asyncio.gather(*calls)
            return dict(zip([name for name, _ in requests], outputs, strict=True)), await abort

    outputs, abort = asyncio.run(run())
    assert abort == {"aborted_count": 3, "request_ids": ["a", "b", "greedy"]}
    assert len(outputs["short"].token_ids) == 2 and outputs["short"].stop_reason == "completed"
    for name in ("a", "b"):
        output = outputs[name]
        assert len(output.token_ids) == 3 and output.stop_reason == "aborted"
        expected = _reference_log_probs(server, image_prompt, output.token_ids)
        torch.testing.assert_close(torch.tensor(output.log_probs), expected, atol=1e-4, rtol=1e-4)
    assert outputs["greedy"].token_ids == [] and outputs["greedy"].stop_reason == "aborted"
    asyncio.run(replica.resume_generation())
    (after,) = _generate(server, image_prompt, SAMPLE)
    assert len(after.token_ids) == 8 and after.stop_reason == "completed"


@QWEN2_5_VL_ONLY
def test_resumed_generation_equals_the_uninterrupted_one(model_config, image_prompt):
    """veRL's fully-async client resends prompt + partial tokens after an abort (through veRL's replica) and the
    resume: the merged response equals an uninterrupted generation from the same seed, greedy and sampled.

    Sampling is reproducible across the interruption because the server draws from torch's one global CPU
    generator, and transformers samples with ``torch.multinomial(probs, 1)``, which on CPU draws one exponential
    per vocabulary entry whatever the probabilities: the resumed request consumes the same random numbers in the
    same order. Only the logits differ (a full prefill instead of cached decoding, ~1e-6), which would change a
    token only at a near tie of ``probs / exponential``; with this tiny model and seed none occurs.
    """
    server, handle, replica, client = _partial_rollout_setup(model_config)
    ids, images = image_prompt

    async def run(params, abort_at=None):
        torch.manual_seed(11)
        request = client.generate("req", prompt_ids=ids, sampling_params=dict(params), image_data=images)
        if abort_at is None:
            return await request
        request = asyncio.ensure_future(request)
        with _at_token(server, abort_at, replica.abort_all_requests, until=lambda: _aborted(server)) as abort:
            await abort
            await replica.resume_generation()
            return await request

    responses = {}
    for name, params in (("greedy", GREEDY), ("sampled", SAMPLE)):
        whole = asyncio.run(run(params))
        handle.generate_calls.clear()
        resumed = asyncio.run(run(params, abort_at=3))
        assert len(whole.token_ids) == 8 and whole.stop_reason == resumed.stop_reason == "length"
        assert resumed.token_ids == whole.token_ids
        torch.testing.assert_close(resumed.log_probs, whole.log_probs, atol=1e-4, rtol=1e-4)
        # What the server was asked: the prompt with all 8 tokens to go, then prompt + 3 tokens with 5 to go.
        sent = [(call["prompt_ids"], call["sampling_params"]["max_tokens"]) for call in handle.generate_calls]
        assert sent == [(ids, 8), (ids + whole.token_ids[:3], 5)]
        responses[name] = whole.token_ids
    assert responses["sampled"] != responses["greedy"]  # the sampled case really sampled


@QWEN2_5_VL_ONLY
def test_requests_while_aborted_are_parked_until_resume_or_rejected(model_config, image_prompt):
    server, _, replica, _ = _partial_rollout_setup(model_config)
    ids, images = image_prompt
    (expected,) = _generate(server, image_prompt, GREEDY)

    async def run():
        await server.set_global_steps(4)
        await replica.abort_all_requests()
        parked = asyncio.ensure_future(server.generate(ids, dict(GREEDY), "parked", image_data=images))
        await asyncio.sleep(0.3)
        assert not parked.done()
        await replica.resume_generation()
        resumed = await asyncio.wait_for(parked, 30)
        await replica.abort_all_requests(reject_request=True)
        rejected = await asyncio.wait_for(server.generate(ids, dict(GREEDY), "rejected", image_data=images), 1)
        await replica.resume_generation()
        after = await server.generate(ids, dict(GREEDY), "after", image_data=images)
        return resumed, rejected, after

    resumed, rejected, after = asyncio.run(run())
    assert resumed.token_ids == after.token_ids == expected.token_ids
    assert resumed.stop_reason == after.stop_reason == "completed"
    assert rejected.token_ids == [] and rejected.stop_reason == "aborted"
    assert rejected.extra_fields["global_steps"] == 4


def _new_weights(model_config):
    from transformers import AutoModelForImageTextToText

    other = AutoModelForImageTextToText.from_pretrained(model_config.local_path)
    torch.manual_seed(1)
    with torch.no_grad():
        other.lm_head.weight.normal_()
    return other


@QWEN2_5_VL_ONLY
def test_weights_updated_while_aborted_generate_the_rest(model_config, image_prompt, monkeypatch):
    """colocate_async: abort, weights of step 2 through the worker adapter, resume. The client's merged response
    has its first 3 tokens from the old weights and the rest greedy under the new ones, and says so in its steps."""
    from transformers import AutoModelForImageTextToText

    from verl_tor.cpu.rollout_hf import server as server_module

    server, handle, replica, client = _partial_rollout_setup(model_config)
    monkeypatch.setattr(server_module.ray, "get_actor", lambda name: handle)
    monkeypatch.delenv("RANK", raising=False)
    adapter = server_module.HFServerAdapter(_rollout_config(), model_config, None)
    old = AutoModelForImageTextToText.from_pretrained(model_config.local_path)
    new = _new_weights(model_config)
    ids, images = image_prompt

    async def run():
        await server.set_global_steps(1)
        request = asyncio.ensure_future(
            client.generate("req", prompt_ids=ids, sampling_params=dict(GREEDY), image_data=images)
        )
        with _at_token(server, 3, replica.abort_all_requests, until=lambda: _aborted(server)) as abort:
            await abort
            await adapter.update_weights(iter(new.state_dict().items()), global_steps=2)
            await replica.resume_generation()
            return await request

    output = asyncio.run(run())
    tokens = output.token_ids
    assert len(tokens) == 8
    old_log_probs = _reference_log_probs(server, image_prompt, tokens[:3], model=old)
    torch.testing.assert_close(torch.tensor(output.log_probs[:3]), old_log_probs, atol=1e-4, rtol=1e-4)
    new_distributions = _reference_distributions(server, image_prompt, tokens, model=new)[3:]
    assert tokens[3:] == new_distributions.argmax(-1).tolist()
    new_log_probs = new_distributions.gather(-1, torch.tensor(tokens[3:])[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(output.log_probs[3:]), new_log_probs, atol=1e-4, rtol=1e-4)
    assert output.extra_fields["min_global_steps"] == 1
    assert output.extra_fields["max_global_steps"] == output.extra_fields["global_steps"] == 2


@QWEN2_5_VL_ONLY
def test_weight_update_waits_for_the_running_generation(model_config, image_prompt):
    """A weight update sent while a generation runs (no abort) is held until it ends: every token and log-prob of
    that response comes from the old weights."""
    from transformers import AutoModelForImageTextToText

    server, _, _, _ = _partial_rollout_setup(model_config)
    old = AutoModelForImageTextToText.from_pretrained(model_config.local_path)
    new = _new_weights(model_config)
    ids, images = image_prompt

    async def run():
        # The generation stays at its 2nd token for up to 1 s, time enough for an update that does not wait.
        with _at_token(server, 2, lambda: server.update_weights(new.state_dict()), timeout=1.0) as update:
            output = await server.generate(ids, dict(GREEDY), "r", image_data=images)
            await update
        return output

    output = asyncio.run(run())
    distributions = _reference_distributions(server, image_prompt, output.token_ids, model=old)
    assert output.token_ids == distributions.argmax(-1).tolist()
    expected = distributions.gather(-1, torch.tensor(output.token_ids)[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(output.log_probs), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(server.model.lm_head.weight, new.lm_head.weight)
