"""A reward with spread inside every GRPO group, for end-to-end tests on a random tiny model.

The colour reward is almost always 0 for a random model, so its advantages (and the actor's gradient) are 0.
Here the score grows with the number of distinct characters of the response, which varies between samples.
Loaded by file path: ``reward.custom_reward_function.path=<this file>``.
"""

from typing import Any


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info=None, **kwargs: Any) -> dict:
    score = min(len(set(solution_str)), 10) / 10
    return {"score": score, "acc": float(score >= 0.5)}
