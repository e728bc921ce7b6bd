"""The audit: every token-credit method's choices on the same rollouts, side by side, before paying for a run.

``python -m verl_tor.audit MODEL DATA [--methods tor,grpo] [--prompts N] [--n K] [--out DIR] [--cpu]`` runs one step
of veRL's ``main_ppo`` in trainer mode ``tor_audit`` (:mod:`verl_tor.audit.trainer`): veRL's rollout, the
old-log-prob forward, the counterfactual passes the methods need, every method's scores, sets and weights on the
same tokens (:mod:`verl_tor.audit.methods`), and no update. It writes ``DIR/audit.json``
(:mod:`verl_tor.audit.report`) and ``DIR/audit.html`` (:mod:`verl_tor.audit.page`). docs/audit.md is the guide.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

AUDIT_JSON = "audit.json"
AUDIT_HTML = "audit.html"


@dataclass
class AuditSettings:
    """The ``tor_audit:`` section the trainer mode ``tor_audit`` reads.

    Parameters:
        out (`str`): folder that receives audit.json and audit.html.
        methods (`list[str]`, defaults to tor, grpo): the methods to audit (:data:`verl_tor.audit.methods.AUDIT_METHODS`).
        thumbnail_px (`int`, defaults to 96): longest side of the prompt images shown with each sample.
    """

    out: str
    methods: list[str] = field(default_factory=lambda: ["tor", "grpo"])
    thumbnail_px: int = 96

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> AuditSettings:
        """From the Hydra section; unknown keys are an error naming them."""
        section = dict(section)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(
                f"unknown audit option(s) {', '.join('tor_audit.' + k for k in unknown)}; valid: {sorted(known)}"
            )
        if not section.get("out"):
            raise ValueError("tor_audit.out (the folder of audit.json and audit.html) is required")
        methods = section.get("methods", ["tor", "grpo"])
        section["methods"] = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
        return cls(**section)
