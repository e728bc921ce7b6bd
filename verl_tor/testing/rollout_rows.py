"""Samples laid out exactly as veRL's agent loop stores them in TransferQueue, for tests and benchmarks.

The multimodal inputs and the (4, L) M-RoPE position ids come from veRL's own ``AgentLoopWorker`` helpers
(``_compute_multi_modal_inputs``, ``_compute_position_ids``), so what the engine sees here is what it sees in a
real rollout batch.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from tensordict import NonTensorStack, TensorDict

from verl_tor.counterfactual import Samples
from verl_tor.counterfactual.families import vision_block_spec
from verl_tor.nested import nested_rows


def agent_loop_row(processor, messages: list[dict], images: list | None, response_ids: list[int]) -> dict:
    """One sample (prompt rendered by the chat template, images expanded) with veRL's per-sample fields."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = processor(text=[text], images=images or None, return_tensors="pt")["input_ids"][0]
    responses = torch.tensor(response_ids, dtype=torch.long)
    input_ids = torch.cat([prompt_ids, responses])
    attention_mask = torch.ones_like(input_ids)
    worker = SimpleNamespace(
        processor=processor,
        tokenizer=processor.tokenizer,
        mm_processor_kwargs=None,
        _get_mm_processor_kwargs=lambda audio_data=None: {},
    )
    output = SimpleNamespace(multi_modal_data={"images": images} if images else {}, mm_processor_kwargs=None)
    multi_modal_inputs = AgentLoopWorker._compute_multi_modal_inputs(worker, output, input_ids.unsqueeze(0))
    position_ids = AgentLoopWorker._compute_position_ids(
        worker, input_ids.unsqueeze(0), attention_mask.unsqueeze(0), multi_modal_inputs
    ).squeeze(0)
    return {
        "prompts": prompt_ids,
        "responses": responses,
        "input_ids": input_ids,
        "position_ids": position_ids,
        "response_mask": torch.ones_like(responses),
        "loss_mask": torch.ones_like(responses),
        "multi_modal_inputs": multi_modal_inputs,
    }


def rows_to_batch(rows: list[dict]) -> TensorDict:
    """Stack samples into the nested TensorDict the actor's ``infer_batch`` receives (ragged in the last dim)."""
    fields = {key: nested_rows([row[key] for row in rows]) for key in rows[0] if key != "multi_modal_inputs"}
    fields["multi_modal_inputs"] = NonTensorStack(*[row["multi_modal_inputs"] for row in rows])
    return TensorDict(fields, batch_size=[len(rows)])


def image_removed_rows(processor, rows: list[dict]) -> tuple[TensorDict | None, list[int]]:
    """The image-removed batch of ``agent_loop_row`` samples, as the trainer builds it for this model
    (:meth:`verl_tor.counterfactual.families.VisionBlockSpec.image_removed_batch`; ``processor`` from veRL's ``hf_processor``).
    """
    spec = vision_block_spec(processor, processor.config)
    return spec.image_removed_batch(
        [row["prompts"] for row in rows], [row["responses"] for row in rows], [row["response_mask"] for row in rows]
    )


def rows_to_samples(rows: list[dict]) -> Samples:
    """Agent-loop rows as the per-sample fields ``verl_tor.counterfactual.counterfactual_batch`` reads."""
    return Samples(
        prompts=[row["prompts"] for row in rows],
        responses=[row["responses"] for row in rows],
        response_masks=[row["response_mask"] for row in rows],
        position_ids=[row["position_ids"] for row in rows],
        multi_modal_inputs=[row["multi_modal_inputs"] for row in rows],
    )
