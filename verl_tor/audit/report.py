"""``audit.json`` from one batch: every method's scores, sets and weights on the same tokens, and their comparison.

Format (version 1; every statistic is over the valid response tokens of the batch's real samples)::

    {"version": 1, "settings": {...the run's model, data, sampling, methods...},
     "n_samples": int, "n_valid_tokens": int,
     "methods": {name: {"description": str, "counterfactual": str | null, "config": {...},
                        "mean_weight": float,
                        "sets": {set: {"count": int, "fraction": float, "threshold": float,
                                       "top_tokens": [[text, count], ...]}},
                        "scores": {score: {"mean": float, "histogram": {"edges": [...], "counts": [...]}}},
                        "ground_truth": {set: {"precision": float, "recall": float}} | null}},
     "overlap": {"labels": ["method/set", ...], "jaccard": [[...]], "share": [[...]]},
     "correlation": {"labels": ["method/score", ...], "spearman": [[...]]},
     "passes": {name: {"time_s": float, ...}},     # the old-log-prob forward and each counterfactual pass
     "ground_truth": {"source": str, "image_tokens": int, "image_share": float} | null,
     "images": {uid: ["data:image/png;base64,...", ...]},
     "samples": [{"index", "uid", "data_source", "prompt", "reward", "acc", "correct", "has_image",
                  "tokens": {"id": [...], "text": [...], "valid": [...], "image": [...] | null},
                  "methods": {name: {"set": [...], "w": [...], "scores": {score: [...]}}}}]}

``share[i][j]`` is the share of ``labels[i]``'s set that ``labels[j]``'s set also holds. A token's ``set`` under a
method is ``none``, the name of the one set holding it, ``both`` for ToR's T_r ∩ T_p (as the token inspector
writes it), or the names joined by ``+``. ``image`` is the ground truth where the data has one (the demo task:
:func:`verl_tor.demo.task.token_labels`, the colour word): which tokens only the image decides.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from verl_tor.audit.methods import AuditMethod, MethodResult
from verl_tor.audit.stats import jaccard, pairwise, precision_recall, share, spearman
from verl_tor.inspect.record import TOP_TOKENS, _rounded, histogram

FORMAT_VERSION = 1


@dataclass
class AuditSample:
    """One real sample of the batch, as the page shows it (``index`` is its row in the batch)."""

    index: int
    uid: str
    data_source: str
    prompt: str
    reward: float
    acc: float | None
    has_image: bool
    token_ids: list[int]
    token_texts: list[str]
    valid: list[bool]

    @property
    def correct(self) -> bool:
        """The inspector's rule: acc >= 0.5, or reward > 0 where the reward gives no acc."""
        return self.acc >= 0.5 if self.acc is not None else self.reward > 0


def json_ready(value: Any) -> Any:
    """``value`` with non-finite floats as null (JSON has no NaN; an empty ratio is NaN here)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


def token_set_labels(sets: Mapping[str, torch.Tensor]) -> list[str]:
    """Per token, the label of the sets ``[R]`` bool masks that hold it (module doc)."""
    length = len(next(iter(sets.values()))) if sets else 0
    names = list(sets)
    members = [[name for name in names if bool(sets[name][t])] for t in range(length)]
    return [
        "none" if not held else "both" if held == ["reasoning", "perception"] else "+".join(held) for held in members
    ]


def image_token_truth(samples: list[AuditSample]) -> tuple[str, list[list[bool]]] | None:
    """The ground truth "only the image decides this token", per sample and token, where the data has one."""
    from verl_tor.demo.task import COLOUR, DATA_SOURCE, token_labels

    if not samples or any(sample.data_source != DATA_SOURCE for sample in samples):
        return None
    return DATA_SOURCE, [[label == COLOUR for label in token_labels(s.token_texts)[0]] for s in samples]


def build_audit(
    samples: list[AuditSample],
    methods: list[AuditMethod],
    results: Mapping[str, MethodResult],
    passes: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
    images: Mapping[str, list[str]],
) -> dict[str, Any]:
    """The ``audit.json`` record (module doc) of ``samples`` under every method's ``results``.

    Args:
        samples: the batch's real samples, in batch order.
        methods: the audited methods, in the order the page shows them.
        results: per method name, its result over the whole batch (indexed by batch row, padding rows included).
        passes: per extra pass, its measured cost.
        settings: the run's settings, recorded as they are.
        images: per uid, the thumbnails of its prompt's images.
    """
    rows = [sample.index for sample in samples]
    valid = np.concatenate([np.array(s.valid, dtype=bool) for s in samples]) if samples else np.zeros(0, bool)

    def flat(per_row: list[torch.Tensor]) -> np.ndarray:
        """Values of the valid tokens of the real samples, in batch order."""
        if not rows:
            return np.zeros(0)
        return np.concatenate([per_row[row].detach().double().cpu().numpy() for row in rows])[valid]

    token_ids = np.concatenate([np.array(s.token_ids, dtype=np.int64) for s in samples])[valid] if samples else []
    text_of = {i: t for s in samples for i, t in zip(s.token_ids, s.token_texts, strict=True)}
    truth = image_token_truth(samples)
    truth_flat = np.concatenate([np.array(t, dtype=bool) for t in truth[1]])[valid] if truth else None

    set_vectors: dict[str, np.ndarray] = {}
    score_vectors: dict[str, np.ndarray] = {}
    per_method: dict[str, Any] = {}
    n_valid = int(valid.sum())
    for method in methods:
        result = results[method.name]
        sets_record = {}
        for name, masks in result.sets.items():
            selected = flat(masks).astype(bool)
            set_vectors[f"{method.name}/{name}"] = selected
            counts = Counter(token_ids[selected].tolist())
            sets_record[name] = {
                "count": int(selected.sum()),
                "fraction": _rounded(selected.sum() / max(n_valid, 1)),
                "threshold": _rounded(result.thresholds.get(name, 0.0)),
                "top_tokens": [[text_of[token], count] for token, count in counts.most_common(TOP_TOKENS)],
            }
        scores_record = {}
        for name, values in result.scores.items():
            vector = flat(values)
            score_vectors[f"{method.name}/{name}"] = vector
            finite = vector[np.isfinite(vector)]
            scores_record[name] = {
                "mean": _rounded(finite.mean()) if finite.size else float("nan"),
                "histogram": histogram(torch.from_numpy(vector)),
            }
        ground_truth = None
        if truth_flat is not None:
            ground_truth = {}
            for name in result.sets:
                precision, recall = precision_recall(set_vectors[f"{method.name}/{name}"], truth_flat)
                ground_truth[name] = {"precision": _rounded(precision), "recall": _rounded(recall)}
        per_method[method.name] = {
            "description": method.description,
            "counterfactual": result.counterfactual,
            "config": result.config,
            "mean_weight": _rounded(flat(result.weights).mean()) if n_valid else float("nan"),
            "sets": sets_record,
            "scores": scores_record,
            "ground_truth": ground_truth,
        }

    set_labels, score_labels = list(set_vectors), list(score_vectors)
    sample_records = []
    for k, sample in enumerate(samples):
        row = sample.index
        sample_records.append(
            {
                "index": row,
                "uid": sample.uid,
                "data_source": sample.data_source,
                "prompt": sample.prompt,
                "reward": _rounded(sample.reward),
                "acc": None if sample.acc is None else _rounded(sample.acc),
                "correct": sample.correct,
                "has_image": sample.has_image,
                "tokens": {
                    "id": sample.token_ids,
                    "text": sample.token_texts,
                    "valid": sample.valid,
                    "image": truth[1][k] if truth else None,
                },
                "methods": {
                    method.name: {
                        "set": token_set_labels({n: m[row] for n, m in results[method.name].sets.items()})
                        or ["none"] * len(sample.token_ids),
                        "w": [_rounded(w) for w in results[method.name].weights[row].tolist()],
                        "scores": {
                            name: [_rounded(x) for x in values[row].tolist()]
                            for name, values in results[method.name].scores.items()
                        },
                    }
                    for method in methods
                },
            }
        )
    return {
        "version": FORMAT_VERSION,
        "settings": dict(settings),
        "n_samples": len(samples),
        "n_valid_tokens": n_valid,
        "methods": per_method,
        "overlap": {
            "labels": set_labels,
            "jaccard": [[_rounded(v) for v in row] for row in pairwise(set_labels, set_vectors, jaccard)],
            "share": [[_rounded(v) for v in row] for row in pairwise(set_labels, set_vectors, share)],
        },
        "correlation": {
            "labels": score_labels,
            "spearman": [[_rounded(v) for v in row] for row in pairwise(score_labels, score_vectors, spearman)],
        },
        "passes": {name: dict(cost) for name, cost in passes.items()},
        "ground_truth": None
        if truth_flat is None
        else {
            "source": truth[0],
            "image_tokens": int(truth_flat.sum()),
            "image_share": _rounded(truth_flat.sum() / max(n_valid, 1)),
        },
        "images": {uid: list(urls) for uid, urls in images.items()},
        "samples": sample_records,
    }
