"""The ``tor:`` section: a method's components as config keys, each method a named preset of them.

``tor.method=<name>`` picks a preset from the registry (``verl_tor.methods.registry``); every other key, when given
(not null), overrides the preset's value. Settings that cannot be honoured stop here, naming the key: unknown keys,
out-of-range values, an unknown preset, and combinations that contradict each other (a key that the resolved
method never reads, response scope with a reasoning set).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from verl_tor.methods.registry import METHODS
from verl_tor.methods.scores import PERCEPTION_SCORES
from verl_tor.methods.selection import SCOPES

COUNTERFACTUALS = ("remove_image", "mask_image_attention", "black_patches", "mask_patches", "gaussian_noise")
"""The counterfactual inputs ∅ a method may name (``tor.counterfactual``); which of them a trainer can build is the
trainer's business (``verl_tor.config_checks``)."""
USES = ("set_weights", "pgpo_soft")
"""How the scores become weights: ``set_weights`` (a constant weight per set, ToR's Eq. 9; 0/1 gives a mask) or
``pgpo_soft`` (PGPO's threshold-gated, length-normalised weights of the perception score)."""
TRAJECTORY_SCALINGS = ("none", "vppo")
"""A per-response factor on top of the token weights: ``vppo`` (VPPO's trajectory-level advantage shaping)."""


@dataclass(frozen=True)
class TokenCreditConfig:
    """The resolved components of a token-credit method (the ``tor:`` section after its preset).

    Parameters:
        method (`str`, defaults to "tor"): the preset the other values started from (``registry.METHODS``).
        counterfactual (`str` or None): ∅ of the perception score (``COUNTERFACTUALS``); None when the method has
            no perception score.
        perception_score (`str` or None): ``"abs_log_ratio"`` |Δ| or ``"k3"`` e^Δ − Δ − 1 (``scores``); None
            when the method has no perception score.
        entropy_top_p (`float` or None): p of the reasoning score, the top-p truncated entropy (1.0: the full
            entropy); None when the method has no reasoning set. In (0, 1].
        scope (`str`, defaults to "batch"): where the top fractions are taken (``selection.SCOPES``): ``batch`` or
            ``response`` (each response's own valid tokens; the reasoning quantile is batch-level, so ``response``
            needs ``reasoning_quantile = 0``).
        reasoning_quantile (`float`): α_r, fraction of valid tokens in T_r (highest reasoning score); 0: no T_r.
        perception_quantile (`float`): α_p, fraction in T_p (highest perception score); 0: no T_p.
        use (`str`): ``USES``.
        reasoning_weight (`float`): γ_r, weight of T_r \\ T_p.
        perception_weight (`float`): γ_p, weight of T_p \\ T_r.
        overlap_weight (`float`): weight of T_r ∩ T_p; γ_r in ToR's Eq. 9 (the preset's null resolves to γ_r).
        other_weight (`float`): γ_o, weight of valid tokens in neither set.
        pgpo_tau (`float` or None): τ of PGPO's gate, in (0, 1); pgpo_beta (`float` or None): β ≥ 0, PGPO's slope.
        trajectory_scaling (`str`): ``TRAJECTORY_SCALINGS``.
        vppo_min_scale (`float` or None): VPPO's lower end of the trajectory scale, in (0, 1].
    """

    method: str = "tor"
    counterfactual: str | None = "remove_image"
    perception_score: str | None = "abs_log_ratio"
    entropy_top_p: float | None = 0.95
    scope: str = "batch"
    reasoning_quantile: float = 0.3
    perception_quantile: float = 0.3
    use: str = "set_weights"
    reasoning_weight: float = 1.0
    perception_weight: float = 0.5
    overlap_weight: float = 1.0
    other_weight: float = 0.0
    pgpo_tau: float | None = None
    pgpo_beta: float | None = None
    trajectory_scaling: str = "none"
    vppo_min_scale: float | None = None

    @property
    def uses_reasoning_score(self) -> bool:
        """Whether any weight depends on the reasoning score (so the trainer computes it)."""
        return self.use == "set_weights" and self.reasoning_quantile > 0

    @property
    def uses_perception_score(self) -> bool:
        """Whether any weight depends on the perception score (so the trainer runs the counterfactual pass).

        Set weights depend on T_p only where membership changes a weight: γ_p ≠ γ_o, or γ_overlap ≠ γ_r when T_r
        exists (with γ_p = γ_o ToR's pass is skipped, as it always was)."""
        if self.use == "pgpo_soft" or self.trajectory_scaling == "vppo":
            return True
        if self.perception_quantile == 0:
            return False
        return self.perception_weight != self.other_weight or (
            self.reasoning_quantile > 0 and self.overlap_weight != self.reasoning_weight
        )

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any], ignore: Iterable[str] = ()) -> TokenCreditConfig:
        """Resolves a ``tor:`` mapping (e.g. the Hydra DictConfig): the preset ``tor.method``, then every key that
        is given and not null. Keys in ``ignore`` (the section's ``enable`` switch) are skipped; any other unknown key,
        bad value or contradictory combination raises ``ValueError`` naming the key."""
        fields = {field.name for field in dataclasses.fields(cls)}
        ignored = set(ignore)
        unknown = sorted(str(key) for key in section.keys() if key not in fields and key not in ignored)
        if unknown:
            names = ", ".join(f"tor.{key}" for key in unknown)
            raise ValueError(f"unknown ToR option(s) {names}; valid options: {', '.join(sorted(fields))}")
        name = section.get("method", None)
        name = "tor" if name is None else name
        if name not in METHODS:
            raise ValueError(f"tor.method must be one of {', '.join(METHODS)}, got {name!r}")
        given = {key: section[key] for key in section.keys() if key in fields and key != "method"}
        given = {key: value for key, value in given.items() if value is not None}
        values = {**METHODS[name].preset, **given}
        if values.get("overlap_weight") is None:  # Eq. 9: tokens in both sets get γ_r
            values["overlap_weight"] = values["reasoning_weight"]
        cfg = cls(method=name, **values)
        cfg._validate(set(given))
        return cfg

    def _validate(self, given: set[str]) -> None:
        _one_of("counterfactual", self.counterfactual, COUNTERFACTUALS, optional=True)
        _one_of("perception_score", self.perception_score, PERCEPTION_SCORES, optional=True)
        _one_of("scope", self.scope, SCOPES)
        _one_of("use", self.use, USES)
        _one_of("trajectory_scaling", self.trajectory_scaling, TRAJECTORY_SCALINGS)
        for name in ("reasoning_quantile", "perception_quantile"):
            _number(self, name, low=0.0, high=1.0)
        for name in ("reasoning_weight", "perception_weight", "overlap_weight", "other_weight"):
            _number(self, name, low=0.0)
        if self.entropy_top_p is not None:
            _number(self, "entropy_top_p", low=0.0, high=1.0, open_low=True)
        if self.pgpo_tau is not None:
            _number(self, "pgpo_tau", low=0.0, high=1.0, open_low=True, open_high=True)
        if self.pgpo_beta is not None:
            _number(self, "pgpo_beta", low=0.0)
        if self.vppo_min_scale is not None:
            _number(self, "vppo_min_scale", low=0.0, high=1.0, open_low=True)

        if self.scope == "response" and self.reasoning_quantile > 0:
            raise ValueError(
                "tor.scope=response selects each response's own top tokens, but tor.reasoning_quantile is a fraction "
                f"of the whole rollout batch (ToR's and the 80/20 paper's T_r); got tor.reasoning_quantile="
                f"{self.reasoning_quantile}: set it to 0 or use tor.scope=batch"
            )
        required = {"entropy_top_p": self.uses_reasoning_score, "counterfactual": self.uses_perception_score,
                    "perception_score": self.uses_perception_score, "pgpo_tau": self.use == "pgpo_soft",
                    "pgpo_beta": self.use == "pgpo_soft", "vppo_min_scale": self.trajectory_scaling == "vppo"}  # fmt: skip
        for name, needed in required.items():
            if needed and getattr(self, name) is None:
                raise ValueError(f"tor.{name} must be set for tor.method={self.method} with these settings")
        # A key the resolved method's structure never reads would be silently ignored: refuse it. (Equal weights
        # that make a set irrelevant are a choice, not a contradiction: the keys stay allowed then.)
        set_weights = self.use == "set_weights"
        has_perception = self.use == "pgpo_soft" or self.trajectory_scaling == "vppo" or self.perception_quantile > 0
        read = {
            "entropy_top_p": self.uses_reasoning_score,
            "counterfactual": has_perception,
            "perception_score": has_perception,
            "scope": set_weights,
            "reasoning_quantile": set_weights,
            "perception_quantile": set_weights,
            "reasoning_weight": set_weights and self.reasoning_quantile > 0,
            "perception_weight": set_weights and self.perception_quantile > 0,
            "overlap_weight": set_weights and self.reasoning_quantile > 0 and self.perception_quantile > 0,
            "other_weight": set_weights,
            "pgpo_tau": self.use == "pgpo_soft",
            "pgpo_beta": self.use == "pgpo_soft",
            "vppo_min_scale": self.trajectory_scaling == "vppo",
        }
        unread = sorted(name for name in given if not read.get(name, True))
        if unread:
            raise ValueError(
                f"{', '.join(f'tor.{name}' for name in unread)} would have no effect with tor.method={self.method} "
                f"(use={self.use}, reasoning_quantile={self.reasoning_quantile}, perception_quantile="
                f"{self.perception_quantile}, trajectory_scaling={self.trajectory_scaling}): remove it or change "
                "the setting that makes it unused"
            )

    def components(self) -> dict[str, Any]:
        """The resolved components (what the start-up log, run.json and the inspector record)."""
        return dataclasses.asdict(self)

    def describe(self) -> dict[str, str]:
        """One line each for the scores, the sets and the use, in words (the inspector's labels)."""
        if self.uses_reasoning_score:
            top_p = "full entropy" if self.entropy_top_p == 1.0 else f"top-p entropy (p = {self.entropy_top_p:g})"
            reasoning = f"{top_p}; T_r = top {self.reasoning_quantile:.0%} of the {self.scope}"
        else:
            reasoning = "none"
        if self.uses_perception_score:
            perception = f"{self.perception_score} of Δ log π under {self.counterfactual}"
            if self.use == "set_weights" and self.perception_quantile > 0:
                perception += f"; T_p = top {self.perception_quantile:.0%} of the {self.scope}"
        else:
            perception = "none"
        if self.use == "pgpo_soft":
            use = f"PGPO soft weights (τ = {self.pgpo_tau:g}, β = {self.pgpo_beta:g}), per-response mean 1"
        else:
            has_r, has_p = self.uses_reasoning_score, self.uses_perception_score and self.perception_quantile > 0
            weights = [("T_r only" if has_p else "T_r", self.reasoning_weight, has_r),
                       ("T_p only" if has_r else "T_p", self.perception_weight, has_p),
                       ("both", self.overlap_weight, has_r and has_p),
                       ("other" if has_r or has_p else "every token", self.other_weight, True)]  # fmt: skip
            use = "set weights: " + ", ".join(f"{name} {value:g}" for name, value, shown in weights if shown)
        if self.trajectory_scaling == "vppo":
            use += f"; × VPPO trajectory scale in [{self.vppo_min_scale:g}, dynamic max]"
        return {"method": self.method, "reasoning": reasoning, "perception": perception, "use": use}


def _one_of(name: str, value: Any, allowed: tuple[str, ...], optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in allowed:
        raise ValueError(f"tor.{name} must be one of {', '.join(allowed)}, got {value!r}")


def _number(
    cfg: TokenCreditConfig,
    name: str,
    low: float,
    high: float = math.inf,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    """Checks a field is a finite real number in range and stores it as a float (YAML gives ints for ``1``)."""
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"tor.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"tor.{name} must be finite, got {value}")
    below = value <= low if open_low else value < low
    above = value >= high if open_high else value > high
    if below or above:
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        interval = f"{left}{low:g}, {high:g}{right}" if high < math.inf else None
        raise ValueError(
            f"tor.{name} must be in {interval}, got {value}"
            if interval
            else f"tor.{name} must be >= {low:g}, got {value}"
        )
    object.__setattr__(cfg, name, float(value))
