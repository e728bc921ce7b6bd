"""The registry of token-credit methods by name (``tor.method``): each a preset of the ``tor:`` components
(``verl_tor.methods.config``), defined with its paper's formula in its own module.

Adding a method: a module with its docstring (paper, arXiv id, formula, hyperparameters, choices) and ``PRESET``,
one entry here, and, if it needs a new way of turning scores into weights, a ``use`` or ``trajectory_scaling`` value
in ``verl_tor.methods.weights``. No veRL glue changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from verl_tor.methods import entropy_top20, grpo, pgpo, tor, vppo


@dataclass(frozen=True)
class Method:
    """A registered method: its name, paper, and the component values of its preset."""

    name: str
    paper: str
    arxiv: str
    preset: MappingProxyType[str, Any]


def _method(name: str, paper: str, arxiv: str, module: Any) -> Method:
    return Method(name, paper, arxiv, MappingProxyType(dict(module.PRESET)))


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        _method("tor", "ToR: token reweighting for multimodal RLVR", "2603.25077", tor),
        _method("grpo", "GRPO (every token weight 1)", "2402.03300", grpo),
        _method("entropy_top20", "Beyond the 80/20 rule: high-entropy minority tokens", "2506.01939", entropy_top20),
        _method("vppo", "VPPO: spotlight on token perception", "2510.09285", vppo),
        _method("pgpo", "PGPO: perception-grounded policy optimization", "2604.01840", pgpo),
    )
}
"""Name → method, in the order the docs table lists them."""
