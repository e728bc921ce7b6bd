"""Trainer mode ``tor_audit``: one step of veRL's own pipeline that scores every audited method and updates nothing.

:class:`ToRAuditTrainer` is the ``tor_sync`` trainer (:mod:`verl_tor.trainer`) with three changes:

1. the old-log-prob forward (veRL's, with the top-p entropy of ``engine_truncated_entropy``) is followed by one
   counterfactual pass per counterfactual the audited methods need (the trainer's own pass, with the same weights),
   each timed and its peak memory read from the actor workers (:func:`memory_probe`);
2. veRL's advantages are computed as usual but no method's weights are written (ToR's reweighting is skipped);
3. the actor update is replaced by the audit: every method of ``tor_audit.methods`` (:mod:`verl_tor.audit.methods`)
   scores, selects and weights the same tokens, and ``audit.json`` and ``audit.html`` go to ``tor_audit.out``.
   Nothing is sent back to the rollout (no weight changed).

The run must be one step with no checkpoint and no validation (checked at start-up, naming the key);
``python -m verl_tor.audit`` sets all of that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any

import ray
import torch
import transfer_queue as tq
from omegaconf import DictConfig
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.trainer_base import get_trainer_cls, register_trainer

from verl_tor.audit import AUDIT_HTML, AUDIT_JSON, AuditSettings
from verl_tor.audit.methods import (
    MethodResult,
    ScoreInputs,
    counterfactuals_needed,
    resolve_methods,
    truncated_top_p,
)
from verl_tor.audit.page import render_page
from verl_tor.audit.report import AuditSample, build_audit, json_ready
from verl_tor.config_checks import TOR_MODE_PREFIX
from verl_tor.engine_truncated_entropy import TRUNCATED_ENTROPY
from verl_tor.inspect.record import InspectConfig, InspectRecorder, images_from_patches, thumbnail_data_url
from verl_tor.nested import as_list
from verl_tor.trainer import COUNTERFACTUAL_LOG_PROBS, HAS_IMAGE, ToRSteps, non_tensor_list

AUDIT_MODE = TOR_MODE_PREFIX + "audit"
GIB = 2**30


def memory_probe(worker: Any, reset: bool) -> dict[str, float]:
    """Runs inside an actor worker (Ray ``__ray_call__``): its peak memory so far, optionally restarting the count.

    ``rss_peak_gb`` is the process's lifetime peak resident memory (``ru_maxrss``, never reset: a pass shows up only
    when it raises that peak); ``device_peak_gb`` the peak GPU memory allocated by torch since the last reset.
    """
    probe = {"rss_peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        probe["device_peak_gb"] = torch.cuda.max_memory_allocated() / GIB
        if reset:
            torch.cuda.reset_peak_memory_stats()
    return probe


def read_audit_section(config: DictConfig) -> AuditSettings:
    """The top-level ``tor_audit:`` section, and the one-step, no-save, no-validation settings the audit needs."""
    section = config.get("tor_audit")
    if section is None:
        raise ValueError(
            f"trainer.v1.trainer_mode={AUDIT_MODE} needs a top-level tor_audit: section (+tor_audit.out=DIR "
            "+tor_audit.methods=[tor,grpo]); python -m verl_tor.audit writes it"
        )
    settings = AuditSettings.from_mapping(section)
    resolve_methods(settings.methods)
    trainer = config.trainer
    required = {
        "trainer.total_training_steps": (trainer.get("total_training_steps"), 1),
        "trainer.save_freq": (trainer.get("save_freq"), -1),
        "trainer.test_freq": (trainer.get("test_freq"), -1),
        "trainer.val_before_train": (trainer.get("val_before_train"), False),
        "trainer.resume_mode": (trainer.get("resume_mode"), "disable"),
    }
    wrong = [f"{key}={value} (needs {want})" for key, (value, want) in required.items() if value != want]
    if wrong:
        raise ValueError(f"the audit is one step that saves, validates and resumes nothing: {'; '.join(wrong)}")
    if not config.get("tor", {}).get("enable", True):
        raise ValueError("the audit runs the ToR trainer's passes: tor.enable must be true")
    return settings


class ToRAuditTrainer(get_trainer_cls(TOR_MODE_PREFIX + "sync")):
    """veRL's sync trainer with ToR's passes, one step, every audited method on the same rollouts, no update."""

    def __init__(self, config: DictConfig):
        self.audit = read_audit_section(config)
        self.audit_methods = resolve_methods(self.audit.methods)
        super().__init__(config)
        wanted = truncated_top_p(self.audit_methods)
        if wanted is not None and (not self.tor.uses_reasoning_score or wanted != self.tor.entropy_top_p):
            raise ValueError(
                f"the audited methods need the top-p entropy at p = {wanted}: set tor.entropy_top_p={wanted} "
                "(the forward computes the run's tor.entropy_top_p)"
            )
        self.audit_counterfactuals = counterfactuals_needed(self.audit_methods)
        self.audit_passes: dict[str, dict[str, Any]] = {}
        self.audit_counterfactual_log_probs: dict[str, list[torch.Tensor]] = {}
        self.audit_has_image: list[bool] = []

    @property
    def perception_changes_weights(self) -> bool:
        """The counterfactual passes run when an audited method needs one (not when ToR's γ would use it)."""
        return bool(counterfactuals_needed(self.audit_methods))

    # ---- measuring the passes ------------------------------------------------------------------------------------

    def _probe_workers(self, reset: bool) -> dict[str, float]:
        """The largest of each memory figure over the actor workers (:func:`memory_probe`)."""
        probes = ray.get([worker.__ray_call__.remote(memory_probe, reset) for worker in self.actor_rollout_wg.workers])
        return {key: max(probe[key] for probe in probes) for key in probes[0]}

    @contextlib.contextmanager
    def _measured(self, name: str, since: tuple[float, dict] | None = None) -> Iterator[None]:
        """Time the block (from ``since`` when given: a start time and a memory probe taken earlier) and the actor
        workers' peak memory during it into ``audit_passes[name]``."""
        start, before = since or (time.perf_counter(), self._probe_workers(reset=True))
        yield
        seconds = time.perf_counter() - start
        after = self._probe_workers(reset=True)
        self.audit_passes[name] = {
            "time_s": seconds,
            "device_peak_gb": after.get("device_peak_gb"),
            "rss_peak_increase_gb": after["rss_peak_gb"] - before["rss_peak_gb"],
        }

    def _compute_old_log_prob(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        self._forward_start = (time.perf_counter(), self._probe_workers(reset=True))
        if not self.perception_changes_weights:  # no pass follows the forward: the whole call is the forward
            with self._measured("old_log_prob", since=self._forward_start):
                return super()._compute_old_log_prob(batch, metrics)
        return super()._compute_old_log_prob(batch, metrics)

    def _compute_counterfactual_log_probs(self, batch: KVBatchMeta, metrics: dict, forward: Callable) -> None:
        """Right after veRL's old-log-prob forward (``ToRSteps._after_old_log_prob_forward``): one measured pass per
        counterfactual the audited methods need, each kept before the next overwrites the trainer's field."""
        with self._measured("old_log_prob", since=self._forward_start):
            pass
        for name in self.audit_counterfactuals:
            pass_metrics: dict[str, float] = {}
            with self._measured(name):
                self._counterfactual_pass(name, batch, pass_metrics, forward)
            self.audit_passes[name].update(pass_metrics)
            metrics.update(pass_metrics)
            fields = [COUNTERFACTUAL_LOG_PROBS, HAS_IMAGE]
            data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
            self.audit_counterfactual_log_probs[name] = as_list(data[COUNTERFACTUAL_LOG_PROBS])
            self.audit_has_image = [bool(flag) for flag in data[HAS_IMAGE].tolist()]

    def _counterfactual_pass(self, name: str, batch: KVBatchMeta, metrics: dict, forward: Callable) -> None:
        """The trainer's own counterfactual pass, building counterfactual ``name``."""
        run_config = self.tor
        self.tor = dataclasses.replace(run_config, counterfactual=name)
        try:
            super()._compute_counterfactual_log_probs(batch, metrics, forward)
        finally:
            self.tor = run_config

    # ---- no weighting, no update, no weight sync -------------------------------------------------------------------

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        # veRL's advantages only: each method's weights are the audit's, not written into the batch.
        return super(ToRSteps, self)._compute_advantage(batch, metrics)

    def _update_actor(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        with_timer = time.perf_counter()
        self._write_audit(batch)
        metrics["tor/audit_write_s"] = time.perf_counter() - with_timer
        return batch

    def on_step_end(self) -> None:
        """No weight changed: nothing to send to the rollout."""

    # ---- the audit -----------------------------------------------------------------------------------------------

    def _write_audit(self, batch: KVBatchMeta) -> None:
        fields = ["prompts", "responses", "response_mask", "entropy", "old_log_probs", "rm_scores", "extra_fields"]
        fields += ["data_source", "uid"]
        truncated = self.tor.uses_reasoning_score and self.tor.entropy_top_p < 1.0
        if truncated:
            fields.append(TRUNCATED_ENTROPY)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        is_padding = [tag.get("is_padding", False) for tag in batch.tags]
        inputs = ScoreInputs(
            response_mask=as_list(data["response_mask"]),
            is_padding=is_padding,
            entropy=as_list(data["entropy"]),
            truncated_entropy=as_list(data[TRUNCATED_ENTROPY]) if truncated else None,
            truncated_top_p=self.tor.entropy_top_p if truncated else None,
            old_log_probs=as_list(data["old_log_probs"]),
            counterfactual_log_probs=self.audit_counterfactual_log_probs,
            has_image=self.audit_has_image or [False] * len(is_padding),
        )
        results: dict[str, MethodResult] = {}
        for method in self.audit_methods:
            start = time.perf_counter()
            results[method.name] = method.compute(inputs)
            self.audit_passes.setdefault(f"{method.name}_selection", {})["time_s"] = time.perf_counter() - start

        samples, images = self._samples(batch, data, is_padding)
        rollout = self.config.actor_rollout_ref.rollout
        settings = {
            "methods": list(self.audit.methods),
            "model": self.config.actor_rollout_ref.model.path,
            "data": list(self.config.data.train_files)
            if not isinstance(self.config.data.train_files, str)
            else self.config.data.train_files,
            "prompts": int(self.config.data.train_batch_size),
            "n": int(rollout.n),
            "rollout": rollout.name,
            "temperature": float(rollout.temperature),
            "top_p": float(rollout.top_p),
            "max_response_length": int(self.config.data.max_response_length),
            "tor": dataclasses.asdict(self.tor),
        }
        audit = build_audit(samples, self.audit_methods, results, self.audit_passes, settings, images)
        write_outputs(self.audit.out, audit)

    def _samples(self, batch: KVBatchMeta, data, is_padding: list[bool]) -> tuple[list[AuditSample], dict]:
        """The real samples of the batch, and one set of thumbnails per prompt (uid)."""
        prompts, responses = as_list(data["prompts"]), as_list(data["responses"])
        response_mask = as_list(data["response_mask"])
        extra = non_tensor_list(data["extra_fields"])
        uids, sources = non_tensor_list(data["uid"]), non_tensor_list(data["data_source"])
        acc = [(info or {}).get("reward_extra_info", {}).get("acc") for info in extra]
        rewards = [float(scores.sum()) for scores in as_list(data["rm_scores"])]
        recorder = InspectRecorder(InspectConfig(thumbnail_px=self.audit.thumbnail_px), self.audit.out, self.tokenizer)
        real = [row for row, pad in enumerate(is_padding) if not pad]
        first_of_uid = {}
        for row in real:
            first_of_uid.setdefault(str(uids[row]), row)
        images: dict[str, list[str]] = {}
        if self.processor is not None and first_of_uid:
            inputs = tq.kv_batch_get(
                keys=[batch.keys[row] for row in first_of_uid.values()],
                partition_id=batch.partition_id,
                select_fields="multi_modal_inputs",
            )["multi_modal_inputs"]
            for uid, mm in zip(first_of_uid, non_tensor_list(inputs), strict=True):
                pixels = (mm or {}).get("pixel_values")
                if pixels is not None:
                    pictures = images_from_patches(pixels, mm["image_grid_thw"], self.processor.image_processor)
                    images[uid] = [thumbnail_data_url(p, self.audit.thumbnail_px) for p in pictures]
        samples = []
        for row in real:
            ids = responses[row].tolist()
            samples.append(
                AuditSample(
                    index=row,
                    uid=str(uids[row]),
                    data_source=str(sources[row]),
                    prompt=recorder._prompt_text(prompts[row]),
                    reward=rewards[row],
                    acc=None if acc[row] is None else float(acc[row]),
                    has_image=str(uids[row]) in images,
                    token_ids=ids,
                    token_texts=[self.tokenizer.decode([token]) for token in ids],
                    valid=response_mask[row].bool().tolist(),
                )
            )
        return samples, images


def write_outputs(out_dir: str, audit: dict[str, Any]) -> tuple[str, str]:
    """``audit.json`` and ``audit.html`` into ``out_dir``, each written whole (a temporary file renamed)."""
    os.makedirs(out_dir, exist_ok=True)
    audit = json_ready(audit)
    paths = []
    for name, text in (
        (AUDIT_JSON, json.dumps(audit, ensure_ascii=False, allow_nan=False)),
        (AUDIT_HTML, render_page(audit)),
    ):
        path = os.path.join(out_dir, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
        paths.append(path)
    return paths[0], paths[1]


register_trainer(AUDIT_MODE)(ToRAuditTrainer)
