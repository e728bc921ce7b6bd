"""ToR on veRL 0.9.1's V1 trainers: a ToR variant of every trainer mode, ``tor_<mode>`` (``tor_sync``,
``tor_colocate_async``, ``tor_separate_async``, and any mode registered before this module is imported).

Every mode runs the same per-update pipeline (``PPOTrainer._step_once``: old log-probs → ref → advantages →
update); :class:`ToRSteps` adds ToR to it and the mode's own class does everything else (replay buffer, warm-up
batches, weight sync, partial rollouts) unchanged:

1. old log-probs: veRL's forward also returns the top-p entropy of each token (``engine_truncated_entropy``) when
   the method has a reasoning set and ``tor.entropy_top_p < 1``; at p = 1 veRL's own entropy is the score;
2. right after that forward, with the same weights, the counterfactual pass (when the method's weights depend on
   the perception score): the old policy scores each image sample's response under the counterfactual input
   ``tor.counterfactual`` (the image removed, its attention masked, its patches blackened or masked, noise on its
   pixels: ``verl_tor.counterfactual``), through the actor worker group at the rollout temperature;
   log π(o_t | ∅) is stored in TransferQueue (the old log-probs for samples without an image, so Δ = 0 there);
3. after veRL's advantages: the method's token weights over the rollout batch (``verl_tor.methods``, chosen by
   ``tor.method``) multiply each token's policy-loss term: through its advantage (for w ≥ 0 exactly the weighted
   clipped surrogate, also under DAPO's dual clip) or, for loss modes not homogeneous in the advantage, through
   veRL's per-token loss multiplier ``rollout_is_weights`` (``policy_loss``); KL and entropy terms are untouched.
   Every method takes this one path: the glue does not change per method.

What "the rollout batch" and "the old policy" are in each mode:

- ``sync``: the step's batch (``data.train_batch_size`` prompts × ``rollout.n``); the actor's weights, which also
  generated it.
- ``colocate_async``: the step's batch, sampled from veRL's asynchronous replay buffer; the actor's current weights
  at the old-log-prob forward. A response may have been generated under older weights, and a partial rollout
  under several (its generation aborted at a weight update and resumed after it): its tokens are scored like every
  other, by the current weights, whichever version sampled them (veRL's rollout correction, when on, handles that
  mismatch for the importance weights; ToR's selection does not look at it).
- ``separate_async``: one local update, ``train_batch_size / parameter_sync_step`` prompts: each of the
  ``parameter_sync_step`` updates per step selects over its own samples; the scores come from the weights veRL
  computes that update's old log-probs with (π_old of the sync cycle, restored from CPU for updates after the
  first), because the counterfactual pass runs right after that forward, before veRL puts the current weights back.

Per-update ``tor/*`` metrics of a step with several local updates are combined by veRL's ``MetricsAggregator``
(sample-weighted means; ``.../max`` and ``.../min`` by max and min).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import torch
import transfer_queue as tq
from omegaconf import DictConfig
from tensordict import NonTensorData, TensorDict
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, get_trainer_cls, register_trainer
from verl.utils import tensordict_utils as tu
from verl.utils.debug import marked_timer
from verl.workers.rollout.utils import get_vision_placeholder_token_ids
from verl.workers.utils.padding import response_from_nested

from verl_tor.config_checks import (
    TOR_MODE_PREFIX,
    log_method,
    method_record,
    read_inspect_section,
    read_tor_section,
)
from verl_tor.counterfactual import REQUIRED_FIELDS, Samples, counterfactual_batch
from verl_tor.counterfactual.families import vision_block_spec
from verl_tor.engine_truncated_entropy import TRUNCATED_ENTROPY, TRUNCATED_ENTROPY_TOP_P
from verl_tor.inspect.record import InspectRecorder, StepBatch
from verl_tor.launch.prompt_filter import RUN_JSON_ENV
from verl_tor.nested import as_list, nested_rows
from verl_tor.policy_loss import loss_mode, weight_target
from verl_tor.steps import (
    ROLLOUT_IS_WEIGHTS,
    apply_token_weights,
    batch_token_credit,
    counterfactual_rows,
    pad_rows_to_multiple,
    require_no_images_in_responses,
    unweighted_advantage_metrics,
)

# TransferQueue fields this trainer adds to each sample, besides the engine's TRUNCATED_ENTROPY: response-aligned
# log π(o_t | ∅) (a sample without an image holds its own log-probs) and the method's weights, and a per-sample flag.
COUNTERFACTUAL_LOG_PROBS = "tor_counterfactual_log_probs"
HAS_IMAGE = "tor_has_image"
TOKEN_WEIGHTS = "tor_weights"
METHOD_FILE = "tor_method.json"


class ToRSteps:
    """ToR's steps, mixed in before one of veRL's trainer classes; with ``tor.enable=false`` it is that trainer."""

    base_mode: ClassVar[str]
    """The veRL trainer mode this variant runs (``trainer.v1.<base_mode>`` holds its settings)."""

    def __init__(self, config: DictConfig):
        # Validate before veRL builds anything: a bad `tor.*` value must not cost a model load.
        self.tor_enabled, self.tor = read_tor_section(config)
        self.inspect = read_inspect_section(config)
        self.tor_weight_target = weight_target(loss_mode(config)) if self.tor_enabled else None
        super().__init__(config)

    # veRL's base trainer assigns `trainer_mode` from the config ("tor_sync", ...) and then branches on it (replay
    # buffer, refills, TransferQueue checkpoints, `trainer.v1.<mode>` settings): ToR runs its base mode.
    @property
    def trainer_mode(self) -> str:
        return self.base_mode

    @trainer_mode.setter
    def trainer_mode(self, _name: str) -> None:
        pass

    @property
    def perception_changes_weights(self) -> bool:
        """Whether the method's weights depend on the perception score: otherwise (e.g. GRPO, the 80/20 preset, or
        ToR with γ_p = γ_o) the counterfactual pass is skipped."""
        return self.tor.uses_perception_score

    def _init_tokenizer(self):
        super()._init_tokenizer()
        if not self.tor_enabled:
            return
        self.vision_placeholder_ids = get_vision_placeholder_token_ids(self.processor)
        if self.perception_changes_weights:
            hf_config = self.processor.config if self.processor is not None else None
            self.vision_spec = vision_block_spec(self.processor, hf_config)
            # The random counterfactuals draw per sample from this, the step and the sample's content.
            self.counterfactual_seed = int(self.config.data.get("seed", None) or 0)
        self.inspect_recorder = None
        if self.inspect.enabled:
            self.inspect_recorder = InspectRecorder(
                self.inspect,
                self.inspect.dir or self.config.trainer.default_local_dir,
                self.tokenizer,
                self.processor,
                seed=int(self.config.data.get("seed", None) or 0),
            )
            self.inspect_recorder.write_run_header(
                self.config.trainer.experiment_name, self.tor.components(), self.tor_weight_target, self.tor.describe()
            )
        self._record_method()

    def _record_method(self) -> None:
        """Log the resolved method and record it in the run's ``run.json`` (under ``tor_method``, when the recipes
        name that file through ``VERL_TOR_RUN_JSON``), else in ``tor_method.json`` next to the inspector file."""
        record = method_record(self.tor, self.tor_weight_target)
        log_method(record)
        run_json = os.environ.get(RUN_JSON_ENV)
        if run_json:
            path = Path(run_json)
            info = json.loads(path.read_text()) if path.is_file() else {}
            info["tor_method"] = record
        else:
            path = Path(self.inspect.dir or self.config.trainer.default_local_dir) / METHOD_FILE
            info = record
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=2) + "\n")

    def _compute_old_log_prob(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        if not self.tor_enabled:
            return super()._compute_old_log_prob(batch, metrics)
        if self.tor.uses_reasoning_score and self.tor.entropy_top_p < 1.0:
            batch.extra_info[TRUNCATED_ENTROPY_TOP_P] = self.tor.entropy_top_p
        perception_pass = self._after_old_log_prob_forward if self.perception_changes_weights else None
        try:
            with perception_pass(batch, metrics) if perception_pass else contextlib.nullcontext():
                batch = super()._compute_old_log_prob(batch, metrics)
        finally:
            # Later forwards of this step (ref, actor update) must not pay for the truncated entropy.
            batch.extra_info.pop(TRUNCATED_ENTROPY_TOP_P, None)
        return batch

    @contextlib.contextmanager
    def _after_old_log_prob_forward(self, batch: KVBatchMeta, metrics: dict) -> Iterator[None]:
        """Run the counterfactual pass right after veRL's old-log-prob forward, with the weights it used.

        A mode may change the actor's weights around that forward (``separate_async`` restores π_old from CPU for
        later local updates and puts the current weights back afterwards); hooking the worker call for the
        duration of the mode's ``_compute_old_log_prob`` keeps both passes on the same weights in every mode.
        """
        worker_group = self.actor_rollout_wg
        forward = worker_group.compute_log_prob
        ran = []

        def compute_log_prob(data, *args, **kwargs):
            output = forward(data, *args, **kwargs)
            if not ran:
                ran.append(True)
                with marked_timer("tor_counterfactual", self.timing_raw, color="purple"):
                    self._compute_counterfactual_log_probs(batch, metrics, forward)
            return output

        worker_group.compute_log_prob = compute_log_prob
        try:
            yield
        finally:
            worker_group.compute_log_prob = forward
        if not ran:
            raise RuntimeError(
                "veRL computed the old log-probs without the actor's compute_log_prob, so ToR's counterfactual pass "
                "has no forward to follow (algorithm.rollout_correction.bypass_mode must be false)"
            )

    def _compute_counterfactual_log_probs(self, batch: KVBatchMeta, metrics: dict, forward: Callable) -> None:
        """Score each image sample's response under ``tor.counterfactual`` through ``forward`` (the actor's
        ``compute_log_prob``) and store log π(o_t | ∅) per response token (a sample without an image: its own
        old log-probs, Δ = 0) and a per-sample image flag."""
        kind = self.tor.counterfactual
        fields = sorted({*REQUIRED_FIELDS[kind], "log_probs"})
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        is_padding = [tag.get("is_padding", False) for tag in batch.tags]
        prompts, responses, response_mask = (as_list(data[key]) for key in ("prompts", "responses", "response_mask"))
        # The forward just wrote whole-sequence log-probs; veRL turns them into old_log_probs the same way next.
        old_log_probs = as_list(response_from_nested(data["log_probs"], data["response_mask"]))

        real = [i for i, pad in enumerate(is_padding) if not pad]
        require_no_images_in_responses([responses[i] for i in real], self.vision_placeholder_ids)
        positions = as_list(data["position_ids"]) if "position_ids" in fields else None
        inputs = non_tensor_list(data["multi_modal_inputs"]) if "multi_modal_inputs" in fields else None
        samples = Samples(
            prompts=[prompts[i] for i in real],
            responses=[responses[i] for i in real],
            response_masks=[response_mask[i] for i in real],
            position_ids=None if positions is None else [positions[i] for i in real],
            multi_modal_inputs=None if inputs is None else [inputs[i] for i in real],
        )
        counterfactual, rows = counterfactual_batch(
            kind, self.vision_spec, samples, seed=self.counterfactual_seed, step=self.global_steps
        )
        rows = [real[r] for r in rows]
        computed: list[torch.Tensor] = []
        if counterfactual is not None:
            # veRL splits the request evenly over data-parallel ranks, then into fixed-size micro-batches.
            dp_size = max(self.actor_rollout_wg._dispatch_info["actor"]) + 1
            actor = self.config.actor_rollout_ref
            micro = 1 if actor.actor.use_dynamic_bsz else actor.rollout.log_prob_micro_batch_size_per_gpu
            request = pad_rows_to_multiple(counterfactual, dp_size * micro)
            tu.assign_non_tensor(
                request, temperature=actor.rollout.temperature, calculate_entropy=False, compute_loss=False
            )
            output = forward(request)
            computed = as_list(response_from_nested(output["log_probs"], request["response_mask"]))[: len(rows)]

        counterfactual_log_probs, has_image = counterfactual_rows(old_log_probs, computed, rows)
        fields = {COUNTERFACTUAL_LOG_PROBS: nested_rows(counterfactual_log_probs), HAS_IMAGE: torch.tensor(has_image)}
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=TensorDict(fields, len(batch)))
        all_tokens = sum(len(prompts[i]) + len(responses[i]) for i in real)
        forward_tokens = sum(len(ids) for ids in as_list(counterfactual["input_ids"])) if rows else 0
        metrics["tor/image_sample_fraction"] = len(rows) / max(len(real), 1)
        metrics["tor/counterfactual_token_fraction"] = forward_tokens / max(all_tokens, 1)

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        batch = super()._compute_advantage(batch, metrics)
        if not self.tor_enabled:
            return batch
        fields = ["advantages", "response_mask"]
        entropy_field = TRUNCATED_ENTROPY if (self.tor.entropy_top_p or 1.0) < 1.0 else "entropy"
        if self.tor.uses_reasoning_score:
            fields.append(entropy_field)
        if self.perception_changes_weights:
            fields += ["old_log_probs", COUNTERFACTUAL_LOG_PROBS, HAS_IMAGE]
        # veRL's rollout correction (decoupled mode) may have written its own per-token loss multiplier ρ.
        verl_rho = ROLLOUT_IS_WEIGHTS in stored_fields(batch)
        if verl_rho:
            fields.append(ROLLOUT_IS_WEIGHTS)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        advantages, response_mask = as_list(data["advantages"]), as_list(data["response_mask"])
        is_padding = [tag.get("is_padding", False) for tag in batch.tags]
        scores = {}
        if self.tor.uses_reasoning_score:
            scores["reasoning_score"] = as_list(data[entropy_field])
        if self.perception_changes_weights:
            scores["old_log_probs"] = as_list(data["old_log_probs"])
            scores["counterfactual_log_probs"] = as_list(data[COUNTERFACTUAL_LOG_PROBS])
            scores["has_image"] = [bool(flag) for flag in data[HAS_IMAGE].tolist()]
        credit = batch_token_credit(self.tor, response_mask, is_padding, **scores)
        tor_metrics = dict(credit.metrics)
        tor_metrics.update(unweighted_advantage_metrics(advantages, response_mask, is_padding))
        metrics.update({f"tor/{name}": value for name, value in tor_metrics.items()})
        rho = as_list(data[ROLLOUT_IS_WEIGHTS]) if verl_rho else None
        weighted = apply_token_weights(
            self.tor_weight_target, credit.weights, advantages, rho if self.tor_weight_target == "loss" else None
        )
        if self.inspect.records(self.global_steps):
            with marked_timer("tor_inspect", self.timing_raw, color="gray"):
                step_batch = StepBatch(
                    rows=[i for i, pad in enumerate(is_padding) if not pad],
                    prompts=[],
                    responses=[],
                    response_mask=response_mask,
                    entropy=credit.reasoning_score,
                    sensitivity=credit.perception_score,
                    reasoning=credit.reasoning,
                    perception=credit.perception,
                    weights=credit.weights,
                    advantages=advantages,
                    loss_advantages=weighted.get("advantages", advantages),
                    rho=rho,
                    metrics=tor_metrics,
                )
                self._record_inspection(batch, step_batch)
        fields = {name: nested_rows(rows) for name, rows in weighted.items()}
        fields[TOKEN_WEIGHTS] = nested_rows(credit.weights)
        return tq.kv_batch_put(
            keys=batch.keys, partition_id=batch.partition_id, fields=TensorDict(fields, batch_size=len(batch))
        )

    def _record_inspection(self, batch: KVBatchMeta, step_batch: StepBatch) -> None:
        """Record this step for the token inspector (``tor.inspect``) from what the batch already holds."""
        fields = ["prompts", "responses", "rm_scores", "extra_fields", "extra_info", "data_source", "uid"]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        step_batch.prompts, step_batch.responses = as_list(data["prompts"]), as_list(data["responses"])
        extra = non_tensor_list(data["extra_fields"])
        acc = [(info or {}).get("reward_extra_info", {}).get("acc") for info in extra]
        rewards = [float(scores.sum()) for scores in as_list(data["rm_scores"])]
        correct = [a >= 0.5 if a is not None else r > 0 for a, r in zip(acc, rewards, strict=True)]
        placeholders = torch.tensor(self.vision_placeholder_ids, dtype=torch.long)
        has_image = [bool(torch.isin(prompt, placeholders).any()) for prompt in step_batch.prompts]
        chosen = self.inspect_recorder.choose(step_batch, correct, has_image, self.global_steps)
        images = tq.kv_batch_get(
            keys=[batch.keys[row] for row in chosen],
            partition_id=batch.partition_id,
            select_fields="multi_modal_inputs",
        )["multi_modal_inputs"]
        uids, sources = non_tensor_list(data["uid"]), non_tensor_list(data["data_source"])
        infos = non_tensor_list(data["extra_info"])
        samples = [
            self.inspect_recorder.sample_record(
                step_batch,
                row,
                uid=str(uids[row]),
                data_source=str(sources[row]),
                extra_info=infos[row],
                reward=rewards[row],
                acc=None if acc[row] is None else float(acc[row]),
                multi_modal_inputs=inputs,
            )
            for row, inputs in zip(chosen, non_tensor_list(images), strict=True)
        ]
        self.inspect_recorder.record_step(self.global_steps, step_batch, samples)


def non_tensor_list(value) -> list:
    """Per-sample python objects of a TransferQueue non-tensor field (a ``NonTensorStack`` or its list view)."""
    items = value.tolist() if hasattr(value, "tolist") else list(value)
    return [item.data if isinstance(item, NonTensorData) else item for item in items]


def stored_fields(batch: KVBatchMeta) -> set[str]:
    """The fields TransferQueue holds for the samples of ``batch``."""
    meta = tq.get_client().kv_retrieve_meta(keys=batch.keys, partition_id=batch.partition_id, create=False)
    return set(meta.field_names)


def register_tor_trainers() -> list[str]:
    """Register ``tor_<mode>`` for every trainer mode in veRL's registry that has no ToR variant yet.

    Each variant is :class:`ToRSteps` mixed in before the mode's own class, so a mode veRL adds needs no code here.
    Returns the names registered.
    """
    registered = []
    for mode, base in list(TRAINER_REGISTRY.items()):
        name = TOR_MODE_PREFIX + mode
        if mode.startswith(TOR_MODE_PREFIX) or name in TRAINER_REGISTRY:
            continue
        cls = type(
            f"ToR{base.__name__}",
            (ToRSteps, base),
            {"base_mode": mode, "__module__": __name__, "__doc__": f"veRL's {mode!r} trainer with ToR's steps."},
        )
        globals()[cls.__name__] = cls  # importable by name (pickling)
        register_trainer(name)(cls)
        registered.append(name)
    return registered


register_tor_trainers()
ToRTrainer = get_trainer_cls(TOR_MODE_PREFIX + "sync")
"""The synchronous variant (``trainer.v1.trainer_mode=tor_sync``, the default of ``tor_trainer.yaml``)."""
