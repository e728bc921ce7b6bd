"""Reward for the synthetic colour task, usable as veRL's custom reward function.

    reward.custom_reward_function.path=pkg://verl_tor.testing.colour_reward
    reward.custom_reward_function.name=compute_score

veRL 0.9.1's reward loop (``NaiveRewardManager.run_single``) calls it once per response with the decoded response
(special tokens skipped) and the row's ``reward_model.ground_truth``. A response scores 1 only if it names the
right colour and no other one: a "contains the word" reward is gamed by listing colours.
"""

from __future__ import annotations

import re
from typing import Any

from verl_tor.testing.synthetic_data import COLOURS

# Colour words a response could use besides the task's: naming any of them next to the answer is wrong too.
COLOUR_WORDS = frozenset(COLOURS) | {"black", "white", "grey", "gray", "pink", "brown"}


def named_colours(text: str) -> set[str]:
    """The colour words in ``text`` (case-insensitive, whole words)."""
    return {word for word in re.findall(r"[a-z]+", text.lower()) if word in COLOUR_WORDS}


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **kwargs: Any
) -> float:
    """1.0 if the response names exactly the ground-truth colour, else 0.0."""
    return 1.0 if named_colours(solution_str) == {ground_truth.lower()} else 0.0
