"""The ``hf`` rollout: server actor, replica and worker-side adapter (registered by :mod:`verl_tor.cpu.rollout_hf`).

- :class:`HFRolloutServer` holds its own copy of the model on the platform's device (``cpu`` under
  ``VERL_PLATFORM=cpu``, else the training worker's GPU) and answers veRL's token-in/token-out ``generate``.
- :class:`HFReplica` (``RolloutReplica``) starts one server per replica next to the replica's first worker.
- :class:`HFServerAdapter` (``BaseRollout``) lives in the training worker; veRL's naive checkpoint engine hands it
  the actor's full HF-named tensors after every step and it ships them to the server.

Like veRL's vLLM server, sampling never picks ``<|image_pad|>``/``<|video_pad|>`` or ids past the tokenizer
(they would break the rope index); ``suppress_vision_tokens`` also bans the vision start/end/pad tokens, which a
random model samples too. Log-probs are those of the distribution sampled from: ``log_softmax(logits / T)`` with
banned ids excluded (T = 1 for greedy), i.e. what the actor computes at the rollout temperature.

Partial rollout (veRL's ``FullyAsyncLLMServerClient``, e.g. the ``colocate_async`` trainer): ``abort_all_requests``
closes the server's gate and stops the running ``generate`` after its current token; every admitted request is
answered with the tokens it has so far (log-probs included) and ``stop_reason="aborted"``, and the call returns once
none is left, so the weights can be replaced. Requests that arrive while the gate is closed wait until
``resume_generation`` (or, after ``abort_all_requests(reject_request=True)``, are answered at once with an empty
aborted output). The client resends prompt + partial tokens with the budget that is left.

Seeded sampling (``seeded_sampling``, off by default): transformers samples every row of a ``generate`` call from
the global torch RNG, so a response depends on which concurrent requests were batched with it and in what order
they arrived. With the option on, each sampled request gets its own generator, seeded from the rollout seed, the
replica, the global step, the request's content (prompt ids and image pixels) and how many identical requests this
replica admitted before it in the step; it samples by the exponential race (argmax of p / E with E ~ Exp(1) from
its own generator after transformers' temperature, top-k and top-p warpers), which draws from the same
distribution. Its response then depends only on those, not on the batching: a synchronous run with one replica
samples the same responses every time (up to float rounding differences between batch shapes, which can flip a
near-tie).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from torch.distributed.device_mesh import DeviceMesh
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from verl.plugin.platform import get_platform
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.device import get_device_name
from verl.utils.torch_dtypes import PrecisionType
from verl.workers.config import HFModelConfig, RolloutConfig
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput
from verl.workers.rollout.utils import get_vision_placeholder_token_ids

from verl_tor.cpu.rollout_hf import ROLLOUT_NAME
from verl_tor.cpu.rollout_hf.weights import pack_expert_weights

logger = logging.getLogger(__name__)

VISION_SPECIAL_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")
# How long the server waits after a request for concurrent ones before sampling them together.
BATCH_WINDOW_S = 0.005


@dataclass(frozen=True)
class HFRolloutOptions:
    """Options under ``actor_rollout_ref.rollout.engine_kwargs.hf``."""

    suppress_vision_tokens: bool = False
    """Also never sample ``<|vision_start|>``/``<|vision_end|>``/``<|vision_pad|>`` (a random model does)."""
    max_batch_size: int = 64
    """At most this many requests are sampled in one ``generate`` call."""
    seeded_sampling: bool = False
    """Sample each request from its own seeded generator (module doc): responses independent of batching."""

    @classmethod
    def from_config(cls, config: RolloutConfig) -> HFRolloutOptions:
        return cls(**dict((config.engine_kwargs or {}).get(ROLLOUT_NAME) or {}))


def max_new_tokens(config: RolloutConfig, prompt_length: int, sampling_params: dict[str, Any]) -> int:
    """The response budget of one request, derived like veRL's vLLM server.

    An explicit ``max_tokens``/``max_new_tokens`` wins; otherwise ``min(response_length, prompt_length +
    response_length - len(prompt))``. Clamped to [1, room left in the context window].
    """
    max_model_len = config.max_model_len or config.prompt_length + config.response_length
    room = max_model_len - prompt_length
    if room < 1:
        raise ValueError(f"Prompt length {prompt_length} leaves no room to generate within {max_model_len} tokens")
    if "max_tokens" in sampling_params:
        budget = sampling_params["max_tokens"]
    elif "max_new_tokens" in sampling_params:
        budget = sampling_params["max_new_tokens"]
    else:
        budget = min(config.response_length, config.prompt_length + config.response_length - prompt_length)
    return max(1, min(budget, room))


class Sampled(NamedTuple):
    """One response of :meth:`HFRolloutServer.generate_batch`."""

    token_ids: list[int]
    log_probs: list[float]
    """One per token, of the distribution it was sampled from."""
    stop_reason: str
    """``"completed"`` (EOS or the whole budget, as veRL's vLLM server reports both) or ``"aborted"``."""


class _StopWhen(StoppingCriteria):
    """Ends every row of a running ``generate`` once ``predicate()`` holds (checked after each new token)."""

    def __init__(self, predicate: Callable[[], bool]) -> None:
        self.predicate = predicate

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.predicate(), dtype=torch.bool, device=input_ids.device)


class _SeededSampling(LogitsProcessor):
    """Transformers' temperature, top-k and top-p warpers, then an exponential race with one generator per row.

    Greedy decoding of the result (``do_sample=False``) picks ``argmax_v log p(v) - log E_v`` with E_v ~ Exp(1)
    drawn from the row's generator, i.e. a sample of the warped distribution, the same one ``do_sample=True``
    draws from. Each row draws one vector per generated position, so its tokens depend only on its seed and its
    own logits.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_k: int, top_p: float, device: torch.device):
        self.warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
        if top_k > 0:
            self.warpers.append(TopKLogitsWarper(top_k))
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        warped = torch.log_softmax(self.warpers(input_ids, scores).float(), dim=-1)
        rows = zip(warped, self.generators, strict=True)
        races = torch.stack([torch.empty_like(row).exponential_(generator=generator) for row, generator in rows])
        return warped - races.log()


def _image_bytes(image: Any) -> bytes:
    """The pixels (and their shape) of an image as veRL's agent loop passes it (PIL image, array or tensor)."""
    if hasattr(image, "tobytes") and hasattr(image, "mode"):  # PIL
        return f"{image.mode}{image.size}".encode() + image.tobytes()
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    return f"{array.dtype}{array.shape}".encode() + array.tobytes()


@dataclass
class _Request:
    prompt_ids: list[int]
    images: list[Any] | None
    sampling_params: dict[str, Any]
    future: asyncio.Future  # resolves to (Sampled, global step of the weights that sampled it)
    seed: int | None = None  # seeded sampling's per-request seed


def _server_name(replica_rank: int, name_suffix: str = "", role: str = "") -> str:
    return f"{ROLLOUT_NAME}_server_{role}{replica_rank}{name_suffix}"


class HFRolloutServer:
    """Generates with ``model.generate`` on one device; one instance per rollout replica (a Ray actor)."""

    def __init__(
        self,
        config: RolloutConfig | Any,
        model_config: HFModelConfig | Any,
        replica_rank: int = 0,
    ) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, GenerationConfig

        self.config: RolloutConfig = omega_conf_to_dataclass(config)
        self.model_config: HFModelConfig = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        self.options = HFRolloutOptions.from_config(self.config)
        self.replica_rank = replica_rank
        self.global_steps: int | None = None
        self.device = torch.device(get_device_name())
        self.tokenizer = self.model_config.tokenizer
        self.processor = self.model_config.processor

        hf_config = AutoConfig.from_pretrained(self.model_config.local_path, trust_remote_code=True)
        auto_cls = AutoModelForCausalLM
        if self.processor is not None and type(hf_config) in AutoModelForImageTextToText._model_mapping:
            auto_cls = AutoModelForImageTextToText
        self.model = auto_cls.from_pretrained(
            self.model_config.local_path,
            dtype=PrecisionType.to_dtype(self.config.dtype),
            attn_implementation="sdpa",
            trust_remote_code=True,
        ).to(self.device)
        self.model.eval()
        # Sample only with what veRL asks for, never with the checkpoint's generation defaults.
        self.model.generation_config = GenerationConfig()
        self.banned_token_ids = self._banned_token_ids()
        self._banned = torch.tensor(self.banned_token_ids, dtype=torch.long, device=self.device)
        self.eos_token_ids = self._eos_token_ids()
        torch.manual_seed(self.config.seed + replica_rank)
        self._queue: list[_Request] = []
        self._server_task: asyncio.Task | None = None
        # Partial rollout: a closed gate parks (or rejects) new requests; every abort bumps the counter, which
        # stops the generation that started before it. The lock keeps weight loads out of running generations.
        self._paused = False
        self._rejecting = False
        self._resumed: asyncio.Event | None = None
        self._aborts = 0
        self._in_flight: set[str] = set()
        self._model_lock = threading.Lock()
        # Seeded sampling: how many requests of each content this replica admitted in the current step.
        self._admitted_step: int | None = None
        self._admitted: dict[bytes, int] = {}

    def _banned_token_ids(self) -> list[int]:
        banned = set(get_vision_placeholder_token_ids(self.processor)) if self.processor is not None else set()
        vocab_size = self.model.get_output_embeddings().weight.shape[0]
        banned.update(range(len(self.tokenizer), vocab_size))
        if self.options.suppress_vision_tokens:
            vocab = self.tokenizer.get_vocab()
            banned.update(vocab[token] for token in VISION_SPECIAL_TOKENS if token in vocab)
        return sorted(banned)

    def _eos_token_ids(self) -> list[int]:
        eos = self.model_config.generation_config.eos_token_id if self.model_config.generation_config else None
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return [eos] if isinstance(eos, int) else list(eos)

    def _model_inputs(self, prompts: Sequence[tuple[list[int], Sequence[Any] | None]]) -> dict[str, torch.Tensor]:
        """Left-padded ids and mask, plus pixels for every image of the batch in order."""
        width = max(len(ids) for ids, _ in prompts)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_token_ids[0]
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, (ids, _) in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        images = [image for _, prompt_images in prompts for image in prompt_images or []]
        if images:
            # The prompts already hold the expanded <|image_pad|> runs; the model needs the matching pixels.
            inputs.update(self.processor.image_processor(images=images, return_tensors="pt"))
        if self.processor is not None and hasattr(self.processor, "create_mm_token_type_ids"):
            # transformers 5 computes Qwen-VL rope indices from these token types.
            inputs["mm_token_type_ids"] = torch.tensor(self.processor.create_mm_token_type_ids(input_ids.tolist()))
        return {name: value.to(self.device) for name, value in inputs.items()}

    def _sampling_key(self, prompt_length: int, sampling_params: dict[str, Any]) -> tuple:
        """Requests with equal keys are sampled in one ``generate`` call."""
        return (
            float(sampling_params.get("temperature", 1.0)),
            float(sampling_params.get("top_p", 1.0)),
            int(sampling_params.get("top_k", -1)),
            float(sampling_params.get("repetition_penalty", 1.0)),
            max_new_tokens(self.config, prompt_length, sampling_params),
        )

    def _request_seed(self, prompt_ids: Sequence[int], images: Sequence[Any] | None) -> int:
        """Seeded sampling's seed of a request admitted now: rollout seed, replica, global step, content, and how
        many requests of the same content this replica admitted before in the step (identical requests, e.g. the
        n responses of a prompt, get different seeds, and which one gets which does not matter)."""
        content = hashlib.sha256(np.asarray(prompt_ids, dtype=np.int64).tobytes())
        for image in images or []:
            content.update(_image_bytes(image))
        digest = content.digest()
        if self._admitted_step != self.global_steps:
            self._admitted_step, self._admitted = self.global_steps, {}
        count = self._admitted.get(digest, 0)
        self._admitted[digest] = count + 1
        key = f"{self.config.seed}|{self.replica_rank}|{self.global_steps}|{count}|".encode() + digest
        return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1  # a non-negative int64

    @torch.no_grad()
    def generate_batch(
        self,
        prompts: Sequence[tuple[list[int], Sequence[Any] | None]],
        sampling_params: dict[str, Any],
        stop: Callable[[], bool] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Sampled]:
        """Sample one response per (prompt ids, images): token ids (with EOS where a response stopped there) and
        their log-probs. The response budget is the smallest of the prompts' budgets. Once ``stop()`` holds, every
        row ends after its current token; a row that had neither reached EOS nor the budget is ``"aborted"``.
        ``seeds`` (one per prompt): sample each row from its own generator (:class:`_SeededSampling`) instead of
        the global RNG."""
        from transformers import GenerationConfig

        temperature = float(sampling_params.get("temperature", 1.0))
        greedy = temperature <= 0
        top_k = max(int(sampling_params.get("top_k", -1)), 0)  # top_k 0 is off
        top_p = float(sampling_params.get("top_p", 1.0))
        budget = min(max_new_tokens(self.config, len(ids), sampling_params) for ids, _ in prompts)
        # Unset values fall back to transformers' defaults (top_k 50): give every sampling value.
        sampling, processors = {}, LogitsProcessorList()
        if not greedy and seeds is not None:
            # Transformers' sampling step draws from the global RNG: warp and draw in a processor, decode greedily.
            processors.append(_SeededSampling(seeds, temperature, top_k, top_p, self.device))
        elif not greedy:
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k}
        generation_config = GenerationConfig(
            max_new_tokens=budget,
            **sampling,
            repetition_penalty=float(sampling_params.get("repetition_penalty", 1.0)),
            suppress_tokens=self.banned_token_ids or None,
            eos_token_id=None if self.config.ignore_eos else self.eos_token_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,
        )
        inputs = self._model_inputs(prompts)
        stopping_criteria = StoppingCriteriaList([_StopWhen(stop)] if stop is not None else [])
        output = self.model.generate(
            **inputs,
            generation_config=generation_config,
            logits_processor=processors,
            stopping_criteria=stopping_criteria,
        )
        sequences = output.sequences[:, inputs["input_ids"].shape[1] :]
        logits = torch.stack(output.logits, dim=1).float()  # (batch, new tokens, vocab), before any processor
        logits[..., self._banned] = float("-inf")
        log_probs = torch.log_softmax(logits / (1.0 if greedy else temperature), dim=-1)
        log_probs = log_probs.gather(-1, sequences[..., None])[..., 0]
        results = []
        for token_ids, token_log_probs in zip(sequences.tolist(), log_probs.tolist(), strict=True):
            # A finished response is padded until the whole batch finishes: cut after its first EOS.
            stops = [i for i, token in enumerate(token_ids) if token in self.eos_token_ids]
            ended = bool(stops) and not self.config.ignore_eos
            length = stops[0] + 1 if ended else len(token_ids)
            stop_reason = "completed" if ended or length >= budget else "aborted"
            results.append(Sampled(token_ids[:length], token_log_probs[:length], stop_reason))
        return results

    def _sample_locked(
        self,
        prompts: Sequence[tuple[list[int], Sequence[Any] | None]],
        sampling_params: dict[str, Any],
        aborts: int,
        seeds: Sequence[int] | None,
    ) -> tuple[list[Sampled], int | None]:
        """``generate_batch`` (run off the event loop) with the model held, until an abort after ``aborts``;
        also returns the global step of the weights it sampled with."""
        with self._model_lock:
            global_steps = self.global_steps
            sampled = self.generate_batch(prompts, sampling_params, stop=lambda: self._aborts != aborts, seeds=seeds)
            return sampled, global_steps

    async def _serve_queue(self) -> None:
        """Sample queued requests in batches, grouped by sampling parameters."""
        while self._queue:
            # The agent loop sends one request per response, concurrently: let the others arrive.
            await asyncio.sleep(BATCH_WINDOW_S)
            batch = self._queue[: self.options.max_batch_size]
            self._queue = self._queue[self.options.max_batch_size :]
            groups: dict[tuple, list[_Request]] = {}
            for request in batch:
                key = self._sampling_key(len(request.prompt_ids), request.sampling_params)
                groups.setdefault(key, []).append(request)
            for group in groups.values():
                try:
                    if self._paused:  # aborted before this group started: it has nothing to return
                        results = [(Sampled([], [], "aborted"), self.global_steps) for _ in group]
                    else:
                        # Off the event loop, so that an abort can be taken while the group generates.
                        prompts = [(request.prompt_ids, request.images) for request in group]
                        seeds = [request.seed for request in group] if group[0].seed is not None else None
                        sampled, global_steps = await asyncio.to_thread(
                            self._sample_locked, prompts, group[0].sampling_params, self._aborts, seeds
                        )
                        results = [(response, global_steps) for response in sampled]
                except Exception as error:
                    results = [error] * len(group)
                for request, result in zip(group, results, strict=True):
                    if request.future.done():
                        continue
                    if isinstance(result, Exception):
                        request.future.set_exception(result)
                    else:
                        request.future.set_result(result)

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        audio_data: list[Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        priority: int = 0,
    ) -> TokenOutput:
        """veRL's token-in/token-out request: one response per call, sampled together with concurrent calls.

        While the server is aborted the request waits for ``resume_generation``, or is answered at once with an
        empty ``"aborted"`` output when the abort rejects requests."""
        if video_data or audio_data:
            raise NotImplementedError("the hf rollout generates from text and images only")
        while self._paused:
            if self._rejecting:
                return self._token_output(Sampled([], [], "aborted"), self.global_steps, sampling_params)
            await self._resumed.wait()
        # No await between the gate check and the queue: an abort either parks this request or answers it.
        future = asyncio.get_running_loop().create_future()
        seeded = self.options.seeded_sampling and float(sampling_params.get("temperature", 1.0)) > 0
        seed = self._request_seed(prompt_ids, image_data) if seeded else None
        self._queue.append(_Request(list(prompt_ids), image_data, dict(sampling_params), future, seed))
        self._in_flight.add(request_id)
        if self._server_task is None or self._server_task.done():
            self._server_task = asyncio.create_task(self._serve_queue())
        try:
            sampled, global_steps = await future
        finally:
            self._in_flight.discard(request_id)
        return self._token_output(sampled, global_steps, sampling_params)

    @staticmethod
    def _token_output(sampled: Sampled, global_steps: int | None, sampling_params: dict[str, Any]) -> TokenOutput:
        return TokenOutput(
            token_ids=sampled.token_ids,
            log_probs=sampled.log_probs if sampling_params.get("logprobs") else None,
            stop_reason=sampled.stop_reason,
            num_preempted=0,
            extra_fields={"global_steps": global_steps},
        )

    async def update_weights(self, named_tensors: dict[str, torch.Tensor]) -> None:
        """Load the actor's full HF-named tensors once no generation runs; a name the model does not have is an
        error, not a no-op."""
        await asyncio.to_thread(self._load_weights, named_tensors)

    def _load_weights(self, named_tensors: dict[str, torch.Tensor]) -> None:
        with self._model_lock:
            _, unexpected = self.model.load_state_dict(pack_expert_weights(named_tensors), strict=False)
        if unexpected:
            raise KeyError(f"hf rollout got weights the model does not have: {unexpected[:5]}")

    async def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps

    async def abort_all_requests(self, reject_request: bool = False) -> dict[str, Any]:
        """Close the gate and end the running generation after its current token; returns once every admitted
        request has its (partial) answer. ``reject_request``: answer requests that arrive before the next
        ``resume_generation`` at once (empty, aborted) instead of parking them."""
        self._paused = True
        self._rejecting = reject_request
        if self._resumed is None or self._resumed.is_set():
            self._resumed = asyncio.Event()  # a repeated abort keeps the event that parked requests wait on
        self._aborts += 1
        request_ids = sorted(self._in_flight)
        if self._server_task is not None and not self._server_task.done():
            await asyncio.wait([self._server_task])  # unlike awaiting it, never cancels the task
        return {"aborted_count": len(request_ids), "request_ids": request_ids}

    async def resume_generation(self) -> None:
        """Open the gate: parked requests proceed."""
        self._paused = False
        self._rejecting = False
        if self._resumed is not None:
            self._resumed.set()

    # The model stays on its device between steps (no KV cache to free): the replica's life-cycle calls are no-ops.
    async def wake_up(self, tags: list[str] | None = None) -> None:
        return None

    async def sleep(self) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        return None

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def start_profile(self, **kwargs: Any) -> None:
        return None

    async def stop_profile(self) -> None:
        return None


class HFReplica(RolloutReplica):
    """One :class:`HFRolloutServer` per replica, on the node and device of the replica's first worker."""

    async def launch_servers(self) -> None:
        platform = get_platform()
        envvar = platform.visible_devices_envvar()
        node_id, visible_devices = await self.workers[0].__ray_call__.remote(
            lambda worker: (ray.get_runtime_context().get_node_id(), os.environ.get(envvar))
        )
        role = "reward_" if self.is_reward_model else "teacher_" if self.is_teacher_model else ""
        # The server uses the device of the replica's first worker: same visible devices, and Ray told not to
        # hide them from an actor that holds no GPU (set at process start, before torch looks at devices).
        env_vars = {var: "1" for var in platform.ray_noset_envvars()}
        if visible_devices is not None:
            env_vars[envvar] = visible_devices
        server = (
            ray.remote(HFRolloutServer)
            .options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
                runtime_env={"env_vars": env_vars},
                name=_server_name(self.replica_rank, self.name_suffix, role),
                max_concurrency=self.max_concurrency,
            )
            .remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
        )
        self.servers = [server]
        self._server_handle = server
        self._server_address = _server_name(self.replica_rank, self.name_suffix, role)


class HFServerAdapter(BaseRollout):
    """Worker side of the ``hf`` rollout: forwards the actor's weights to its replica's server."""

    def __init__(
        self,
        config: RolloutConfig,
        model_config: HFModelConfig,
        device_mesh: DeviceMesh | None,
        replica_rank: int = -1,
    ) -> None:
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", 0))
        rollout_world_size = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        self.replica_rank = rank // rollout_world_size if replica_rank == -1 else replica_rank
        self.is_leader_rank = rank % rollout_world_size == 0
        self._server: ray.actor.ActorHandle | None = None

    def _server_handle(self) -> ray.actor.ActorHandle:
        if self._server is None:
            self._server = ray.get_actor(_server_name(self.replica_rank))
        return self._server

    async def update_weights(
        self,
        weights: Generator[tuple[str, torch.Tensor], None, None],
        global_steps: int | None = None,
        wire_format: str = "named_tensors",
        **kwargs: Any,
    ) -> None:
        if wire_format != "named_tensors":
            raise NotImplementedError(f"the hf rollout takes full named tensors, not {wire_format!r}")
        # Every rank drains the generator: under FSDP each tensor is gathered collectively.
        named_tensors = {name: tensor.detach().to("cpu") for name, tensor in weights}
        if not self.is_leader_rank:
            return
        server = self._server_handle()
        await server.update_weights.remote(named_tensors)
        if global_steps is not None:
            await server.set_global_steps.remote(global_steps)

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None
