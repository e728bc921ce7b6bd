"""The prompt of each evaluation setting, as veRL dataset classes (``data.custom_cls``) that ``recipes/eval.sh`` picks.

Each is ``verl_tor.launch.prompt_filter.FilterCountingRLHFDataset`` (veRL's ``RLHFDataset``, counting what its length
filter drops) with one change to the conversation it builds, made in ``_build_messages``: the method veRL uses both
for the prompt it generates from and for the length filter, so the two agree.

* ``HarnessPromptDataset`` (``EVAL_PROTOCOL=tor``): the system prompt of the NoisyRollout harness ToR reports with
  (:data:`HARNESS_SYSTEM_PROMPT`) before the row's conversation.
* ``ImageRemovedDataset`` (``IMAGE=removed``): :func:`image_free_conversation`, every image deleted from the prompt.
* ``HarnessPromptImageRemovedDataset``: both.

    data.custom_cls.path=pkg://verl_tor.eval.prompts
    data.custom_cls.name=HarnessPromptDataset
"""

from __future__ import annotations

from typing import Any

from verl_tor.launch.prompt_filter import FilterCountingRLHFDataset

# The harness's default system prompt (its eval/main.py); its example script passes the same words with a line break
# after the first sentence.
HARNESS_SYSTEM_PROMPT = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}."
)
IMAGE_PLACEHOLDER = "<image>"


def image_free_conversation(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation with every image deleted: each ``<image>`` placeholder removed from the text (nothing else
    changes: the text around it stays as it is) and, by the caller, no images. This is the definition of "the
    image removed" that ToR's perception pass reproduces at the token level."""
    return [
        {**message, "content": message["content"].replace(IMAGE_PLACEHOLDER, "")}
        if isinstance(message.get("content"), str)
        else dict(message)
        for message in messages
    ]


class _EvaluationPrompts(FilterCountingRLHFDataset):
    """veRL's dataset with the conversation changed before veRL builds its multimodal messages."""

    system_prompt: str | None = None
    remove_images: bool = False

    def _build_messages(self, example: dict, key: str):
        example = dict(example)
        messages = [dict(message) for message in example[key]]
        if self.remove_images:
            messages = image_free_conversation(messages)
            example[self.image_key] = None
        if self.system_prompt is not None:
            if any(message.get("role") == "system" for message in messages):
                raise ValueError(
                    f"{type(self).__name__} adds the harness's system prompt, but a row already has one: {messages}"
                )
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        example[key] = messages
        return super()._build_messages(example, key)


class HarnessPromptDataset(_EvaluationPrompts):
    """``EVAL_PROTOCOL=tor``: the harness's system prompt first."""

    system_prompt = HARNESS_SYSTEM_PROMPT


class ImageRemovedDataset(_EvaluationPrompts):
    """``IMAGE=removed``: every image deleted from the prompt."""

    remove_images = True


class HarnessPromptImageRemovedDataset(_EvaluationPrompts):
    """``EVAL_PROTOCOL=tor IMAGE=removed``."""

    system_prompt = HARNESS_SYSTEM_PROMPT
    remove_images = True
