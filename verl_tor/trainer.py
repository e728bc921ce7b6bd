"""``ToRTrainer``: veRL 0.9.1's synchronous V1 trainer with ToR token weights (trainer mode ``tor_sync``).

Per step, on top of veRL's pipeline (balance → old log-probs → ref → advantages → actor update):

1. old log-probs: veRL's forward also returns the top-p entropy of each token (``engine_truncated_entropy``)
   unless ``tor.entropy_top_p == 1``, where veRL's own entropy is the score;
2. right after it, the image-removed pass: the rollout (old) policy scores each image sample's response with
   the image deleted from its prompt (``counterfactual``), through the actor worker group at the rollout
   temperature; the visual sensitivity |Δ log π| is stored in TransferQueue;
3. after veRL's advantages: token weights over the whole rollout batch (``token_weights``) multiply each token's
   policy-loss term (Eq. 9): through its advantage, which for weights ≥ 0 is exactly the weighted clipped surrogate
   (also under DAPO's dual clip), or, for loss modes not homogeneous in the advantage, through veRL's per-token
   loss multiplier ``rollout_is_weights`` (``policy_loss``); KL and entropy terms are untouched.

The step logic is in plain functions below, tested directly; the class only moves data through TransferQueue.
"""

from __future__ import annotations

import dataclasses
import time

import torch
import transfer_queue as tq
from omegaconf import DictConfig
from tensordict import NonTensorData, TensorDict
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu
from verl.utils.debug import marked_timer
from verl.workers.rollout.utils import get_vision_placeholder_token_ids
from verl.workers.utils.padding import response_from_nested

from verl_tor.config_checks import TRAINER_MODE, read_inspect_section, read_tor_section
from verl_tor.counterfactual import as_list, image_removed_batch, nested_rows
from verl_tor.engine_truncated_entropy import TRUNCATED_ENTROPY, TRUNCATED_ENTROPY_TOP_P
from verl_tor.inspect.record import InspectRecorder, StepBatch
from verl_tor.policy_loss import WeightTarget, loss_mode, weight_target
from verl_tor.token_weights import ToRConfig, select_top_fraction, tor_token_weights

# TransferQueue fields this trainer adds to each sample (response-aligned), besides the engine's TRUNCATED_ENTROPY.
VISUAL_SENSITIVITY = "tor_visual_sensitivity"
TOKEN_WEIGHTS = "tor_weights"
# veRL's per-token policy-loss multiplier (its rollout-correction weights), read by every policy loss.
ROLLOUT_IS_WEIGHTS = "rollout_is_weights"


def visual_sensitivity(
    old_log_probs: list[torch.Tensor], image_removed_log_probs: list[torch.Tensor], rows: list[int]
) -> list[torch.Tensor]:
    """S_t = |log π(o_t | I, q, o_<t) − log π(o_t | ∅, q, o_<t)| (Eq. 8); 0 for samples without an image.

    Args:
        old_log_probs: per-sample ``[R_i]`` response log-probs with the image.
        image_removed_log_probs: ``[R_i]`` log-probs of the same responses without it, for the samples ``rows``.
        rows: indices into ``old_log_probs`` of the samples that had an image.

    Returns:
        per-sample ``[R_i]`` sensitivities.
    """
    sensitivity = [torch.zeros_like(lp, dtype=torch.float32) for lp in old_log_probs]
    for row, removed in zip(rows, image_removed_log_probs, strict=True):
        sensitivity[row] = (old_log_probs[row].float() - removed.float()).abs()
    return sensitivity


def pad_rows_to_multiple(batch: TensorDict, multiple: int) -> TensorDict:
    """Repeat the first row until the batch size is a multiple of ``multiple`` (ranks × micro-batch size)."""
    missing = -len(batch) % multiple
    if missing == 0:
        return batch
    fields = {}
    for key, value in batch.items():
        rows = as_list(value)
        fields[key] = nested_rows(rows + [rows[0]] * missing)
    return TensorDict(fields, batch_size=[len(batch) + missing])


def padded(rows: list[torch.Tensor], width: int, dtype=torch.float32) -> torch.Tensor:
    """Right-pad per-sample ``[R_i]`` tensors into ``[B, width]``."""
    out = torch.zeros(len(rows), width, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def padded_batch(
    response_mask: list[torch.Tensor], scores: list[list[torch.Tensor]], is_padding: list[bool]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The rollout batch as ``[B, T]`` tensors: the valid-token mask (padding rows all false) and each score."""
    width = max((len(m) for m in response_mask), default=0)
    mask = padded(response_mask, width, torch.bool)
    mask[torch.tensor(is_padding, dtype=torch.bool)] = False
    return mask, [padded(rows, width) for rows in scores]


def batch_token_weights(
    response_mask: list[torch.Tensor],
    entropy: list[torch.Tensor],
    sensitivity: list[torch.Tensor],
    is_padding: list[bool],
    cfg: ToRConfig,
) -> tuple[list[torch.Tensor], dict[str, float]]:
    """ToR's weight of every response token (Eq. 9), selecting over the whole rollout batch.

    Padding rows that veRL adds for data-parallel balance take no part in the selection and get weight 0.

    Args:
        response_mask, entropy, sensitivity: per-sample ``[R_i]`` tensors.
        is_padding: per-sample flag from veRL's batch tags.

    Returns:
        ``(weights, metrics)``: per-sample ``[R_i]`` float32 weights, metrics without prefix.
    """
    mask, (entropy_b, sensitivity_b) = padded_batch(response_mask, [entropy, sensitivity], is_padding)
    weights, metrics = tor_token_weights(entropy_b, sensitivity_b, mask, cfg)
    return [weights[i, : len(m)] for i, m in enumerate(response_mask)], metrics


def batch_token_sets(
    response_mask: list[torch.Tensor],
    entropy: list[torch.Tensor],
    sensitivity: list[torch.Tensor],
    is_padding: list[bool],
    cfg: ToRConfig,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per sample, the ``[R_i]`` masks of its tokens in T_r and in T_p (the selection of ``batch_token_weights``)."""
    mask, (entropy_b, sensitivity_b) = padded_batch(response_mask, [entropy, sensitivity], is_padding)
    reasoning = select_top_fraction(entropy_b, mask, cfg.reasoning_quantile)
    perception = select_top_fraction(sensitivity_b, mask, cfg.perception_quantile)
    return (
        [reasoning[i, : len(m)] for i, m in enumerate(response_mask)],
        [perception[i, : len(m)] for i, m in enumerate(response_mask)],
    )


def apply_token_weights(
    target: WeightTarget,
    weights: list[torch.Tensor],
    advantages: list[torch.Tensor],
    verl_loss_multipliers: list[torch.Tensor] | None = None,
) -> dict[str, list[torch.Tensor]]:
    """The TransferQueue fields that carry ToR's weights into the policy loss (``verl_tor.policy_loss``).

    Args:
        target: "advantages" multiplies each token's advantage by its weight; "loss" writes veRL's per-token loss
            multiplier ``rollout_is_weights`` (times veRL's own rollout-correction weights when it has them).
        weights, advantages, verl_loss_multipliers: per-sample ``[R_i]`` tensors.

    Returns:
        field name → per-sample ``[R_i]`` tensors to store.
    """
    if target == "advantages":
        return {"advantages": [adv * w.to(adv.dtype) for adv, w in zip(advantages, weights, strict=True)]}
    if verl_loss_multipliers is None:
        return {ROLLOUT_IS_WEIGHTS: [w.clone() for w in weights]}
    return {ROLLOUT_IS_WEIGHTS: [m * w.to(m.dtype) for m, w in zip(verl_loss_multipliers, weights, strict=True)]}


def unweighted_advantage_metrics(
    advantages: list[torch.Tensor], response_mask: list[torch.Tensor], is_padding: list[bool]
) -> dict[str, float]:
    """Mean, max and min of the advantages before ToR's weights, over the valid tokens of the real samples: veRL's
    ``critic/advantages/*`` computed the same way, so that a ToR run can be compared with its baseline."""
    rows = [(adv, mask.bool()) for adv, mask, pad in zip(advantages, response_mask, is_padding, strict=True) if not pad]
    valid = torch.cat([adv[mask].float() for adv, mask in rows]) if rows else torch.zeros(0)
    if valid.numel() == 0:
        return {f"advantages_unweighted/{name}": float("nan") for name in ("mean", "max", "min")}
    return {
        "advantages_unweighted/mean": valid.mean().item(),
        "advantages_unweighted/max": valid.max().item(),
        "advantages_unweighted/min": valid.min().item(),
    }


def require_no_images_in_responses(responses: list[torch.Tensor], placeholder_ids: list[int]) -> None:
    """Stop when a response holds an image or video placeholder token (e.g. ``<|image_pad|>``).

    Such tokens come from a tool observation that returned an image inside the response (multi-turn agent loops);
    the image-removed pass deletes vision blocks from the prompt only and has no pixels for them, so their visual
    sensitivity would be measured against a corrupted input.

    Args:
        responses: per-sample ``[R_i]`` response ids of the real (non-padding) samples.
        placeholder_ids: the processor's image/video placeholder ids (veRL's ``get_vision_placeholder_token_ids``).
    """
    if not placeholder_ids:
        return
    ids = torch.tensor(placeholder_ids)
    with_images = sum(bool(torch.isin(response, ids).any()) for response in responses)
    if with_images:
        raise RuntimeError(
            f"{with_images} of {len(responses)} responses of this step hold image or video tokens (a tool observation "
            "that returned an image inside the response). ToR's image-removed pass deletes images from the prompt "
            "only and has no pixels for those, so their visual sensitivity would be measured against a corrupted "
            "input. Run such agent loops without ToR's perception score (tor.perception_weight equal to "
            "tor.other_weight skips the pass) or with tools that return text."
        )


@register_trainer(TRAINER_MODE)
class ToRTrainer(PPOTrainerSync):
    """veRL's synchronous trainer plus ToR's token weights; with ``tor.enable=false`` it is the stock trainer."""

    def __init__(self, config: DictConfig):
        # Validate before veRL builds anything: a bad `tor.*` value must not cost a model load.
        self.tor_enabled, self.tor = read_tor_section(config)
        self.inspect = read_inspect_section(config)
        self.tor_weight_target = weight_target(loss_mode(config)) if self.tor_enabled else None
        super().__init__(config)

    # veRL's base trainer assigns `trainer_mode` from the config (here "tor_sync") and then branches on
    # `trainer_mode == "sync"` (replay buffer, refills, checkpointed TransferQueue state): ToR runs the sync mode.
    @property
    def trainer_mode(self) -> str:
        return "sync"

    @trainer_mode.setter
    def trainer_mode(self, _name: str) -> None:
        pass

    def _init_tokenizer(self):
        super()._init_tokenizer()
        if not self.tor_enabled:
            return
        hf_config = self.processor.config if self.processor is not None else None
        start = getattr(hf_config, "vision_start_token_id", None)
        end = getattr(hf_config, "vision_end_token_id", None)
        if start is None or end is None:
            raise ValueError(
                "tor.counterfactual=remove_image deletes <|vision_start|> ... <|vision_end|> blocks, but the model "
                f"{self.config.actor_rollout_ref.model.path} has no vision_start_token_id / vision_end_token_id"
            )
        self.vision_start_id, self.vision_end_id = int(start), int(end)
        self.vision_placeholder_ids = get_vision_placeholder_token_ids(self.processor)
        # veRL's agent loop stores (4, L) position ids (text row + 3 M-RoPE rows) for processors with a rope index.
        self.position_rows = 4 if hasattr(self.processor, "get_rope_index") else None
        self.inspect_recorder = None
        if self.inspect.enabled:
            self.inspect_recorder = InspectRecorder(
                self.inspect,
                self.inspect.dir or self.config.trainer.default_local_dir,
                self.tokenizer,
                self.processor,
                seed=int(self.config.data.get("seed", None) or 0),
            )
            self.inspect_recorder.write_run_header(self.config.trainer.experiment_name, dataclasses.asdict(self.tor))

    def _compute_old_log_prob(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        if not self.tor_enabled:
            return super()._compute_old_log_prob(batch, metrics)
        truncated = self.tor.entropy_top_p < 1.0
        if truncated:
            batch.extra_info[TRUNCATED_ENTROPY_TOP_P] = self.tor.entropy_top_p
        try:
            batch = super()._compute_old_log_prob(batch, metrics)
        finally:
            # Later forwards of this step (ref, actor update) must not pay for the truncated entropy.
            batch.extra_info.pop(TRUNCATED_ENTROPY_TOP_P, None)
        if self.perception_changes_weights:
            with marked_timer("tor_counterfactual", self.timing_raw, color="purple"):
                self._compute_visual_sensitivity(batch, metrics)
        return batch

    @property
    def perception_changes_weights(self) -> bool:
        """With γ_p = γ_o the perception set changes no weight, so its image-removed pass is skipped."""
        return self.tor.perception_weight != self.tor.other_weight

    def _compute_visual_sensitivity(self, batch: KVBatchMeta, metrics: dict) -> None:
        """Run the image-removed pass with the old policy and store |Δ log π| per response token."""
        start = time.perf_counter()
        fields = ["prompts", "responses", "response_mask", "old_log_probs"]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        is_padding = [tag.get("is_padding", False) for tag in batch.tags]
        prompts, responses = as_list(data["prompts"]), as_list(data["responses"])
        response_mask, old_log_probs = as_list(data["response_mask"]), as_list(data["old_log_probs"])

        real = [i for i, pad in enumerate(is_padding) if not pad]
        require_no_images_in_responses([responses[i] for i in real], self.vision_placeholder_ids)
        removed, rows = image_removed_batch(
            [prompts[i] for i in real],
            [responses[i] for i in real],
            [response_mask[i] for i in real],
            self.position_rows,
            self.vision_start_id,
            self.vision_end_id,
        )
        rows = [real[r] for r in rows]
        removed_log_probs: list[torch.Tensor] = []
        if removed is not None:
            # veRL splits the request evenly over data-parallel ranks, then into fixed-size micro-batches.
            dp_size = max(self.actor_rollout_wg._dispatch_info["actor"]) + 1
            actor = self.config.actor_rollout_ref
            micro = 1 if actor.actor.use_dynamic_bsz else actor.rollout.log_prob_micro_batch_size_per_gpu
            request = pad_rows_to_multiple(removed, dp_size * micro)
            tu.assign_non_tensor(
                request,
                temperature=self.config.actor_rollout_ref.rollout.temperature,
                calculate_entropy=False,
                compute_loss=False,
            )
            output = self.actor_rollout_wg.compute_log_prob(request)
            removed_log_probs = as_list(response_from_nested(output["log_probs"], request["response_mask"]))
            removed_log_probs = removed_log_probs[: len(rows)]

        sensitivity = visual_sensitivity(old_log_probs, removed_log_probs, rows)
        tq.kv_batch_put(
            keys=batch.keys,
            partition_id=batch.partition_id,
            fields=TensorDict({VISUAL_SENSITIVITY: nested_rows(sensitivity)}, batch_size=len(batch)),
        )
        all_tokens = sum(len(prompts[i]) + len(responses[i]) for i in real)
        removed_tokens = sum(len(ids) for ids in as_list(removed["input_ids"])) if removed is not None else 0
        metrics.update(
            {
                "tor/image_sample_fraction": len(rows) / max(len(real), 1),
                "tor/counterfactual_token_fraction": removed_tokens / max(all_tokens, 1),
                "tor/counterfactual_time_s": time.perf_counter() - start,
            }
        )

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        batch = super()._compute_advantage(batch, metrics)
        if not self.tor_enabled:
            return batch
        entropy_field = TRUNCATED_ENTROPY if self.tor.entropy_top_p < 1.0 else "entropy"
        fields = ["advantages", "response_mask", entropy_field]
        if self.perception_changes_weights:
            fields.append(VISUAL_SENSITIVITY)
        # veRL's rollout correction (decoupled mode) may have written its own per-token loss multiplier.
        verl_loss_multiplier = self.tor_weight_target == "loss" and ROLLOUT_IS_WEIGHTS in stored_fields(batch)
        if verl_loss_multiplier:
            fields.append(ROLLOUT_IS_WEIGHTS)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        advantages, response_mask = as_list(data["advantages"]), as_list(data["response_mask"])
        if self.perception_changes_weights:
            sensitivity = as_list(data[VISUAL_SENSITIVITY])
        else:
            sensitivity = [torch.zeros_like(adv, dtype=torch.float32) for adv in advantages]
        is_padding = [tag.get("is_padding", False) for tag in batch.tags]
        weights, tor_metrics = batch_token_weights(
            response_mask, as_list(data[entropy_field]), sensitivity, is_padding, self.tor
        )
        tor_metrics.update(unweighted_advantage_metrics(advantages, response_mask, is_padding))
        if self.inspect.records(self.global_steps):
            start = time.perf_counter()
            step_batch = StepBatch(
                rows=[i for i, pad in enumerate(is_padding) if not pad],
                prompts=[],
                responses=[],
                response_mask=response_mask,
                entropy=as_list(data[entropy_field]),
                sensitivity=sensitivity,
                reasoning=[],
                perception=[],
                weights=weights,
                advantages=advantages,
                metrics=tor_metrics,
            )
            step_batch.reasoning, step_batch.perception = batch_token_sets(
                response_mask, step_batch.entropy, sensitivity, is_padding, self.tor
            )
            self._record_inspection(batch, step_batch)
            tor_metrics["inspect_time_s"] = time.perf_counter() - start
        metrics.update({f"tor/{name}": value for name, value in tor_metrics.items()})
        verl_multipliers = as_list(data[ROLLOUT_IS_WEIGHTS]) if verl_loss_multiplier else None
        weighted = apply_token_weights(self.tor_weight_target, weights, advantages, verl_multipliers)
        fields = {name: nested_rows(rows) for name, rows in weighted.items()}
        fields[TOKEN_WEIGHTS] = nested_rows(weights)
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
        has_image = [bool((prompt == self.vision_start_id).any()) for prompt in step_batch.prompts]
        chosen = self.inspect_recorder.choose(step_batch, correct, has_image, self.global_steps)
        images = tq.kv_batch_get(
            keys=[batch.keys[row] for row in chosen],
            partition_id=batch.partition_id,
            select_fields="multi_modal_inputs",
        )["multi_modal_inputs"]
        images = non_tensor_list(images)
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
            for row, inputs in zip(chosen, images, strict=True)
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
