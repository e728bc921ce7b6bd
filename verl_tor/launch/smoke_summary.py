"""What a short run did, from its metrics files: ``python -m verl_tor.launch.smoke_summary RUN_DIR``.

``make gpu-smoke`` (``recipes/gpu_smoke.sh``) prints this at its end: per training step the step, generation and
update times, the peak GPU memory veRL's engine recorded and ToR's token fractions; then the mean step time without
the first step (start-up and compilation), the peak memory over the run, every ``tor/*`` metric of the last step and
the last validation accuracies. It exits 1, naming what is missing, when the run logged no training step or no
``tor/*`` metric: the smoke then failed even if veRL exited 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from verl_tor.eval.report import read_metrics, validation_accuracies

# Per-step columns: veRL's timers (trainer) and ToR's fractions (verl_tor.trainer).
STEP_COLUMNS = (
    "timing_s/step",
    "timing_s/gen",
    "timing_s/update_actor",
    "tor/reasoning_fraction",
    "tor/perception_fraction",
    "tor/overlap_fraction",
)
# veRL's engine records the torch allocator's peaks after each update (workers/engine_workers.py); the trainer
# prefixes them with the role ("actor/perf/max_memory_allocated_gb"), so they are found by suffix.
PEAK_MEMORY = ("max_memory_allocated_gb", "max_memory_reserved_gb")


def peak(metrics: dict[str, float], suffix: str) -> float | None:
    """Largest value among the metrics whose name ends with ``suffix`` (None when there is none)."""
    values = [value for name, value in metrics.items() if name.endswith(suffix)]
    return max(values) if values else None


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def summarize(steps: dict[int, dict[str, float]]) -> tuple[str, list[str]]:
    """(the printed summary, what is missing) of ``{step: metrics}`` as ``verl_tor.eval.report.read_metrics``
    returns them; training steps are those with ``timing_s/step``."""
    training = {step: metrics for step, metrics in sorted(steps.items()) if "timing_s/step" in metrics}
    missing = []
    if not training:
        missing.append("no training step (no timing_s/step in any step)")
    last = training[max(training)] if training else {}
    tor = {name: value for name, value in sorted(last.items()) if name.startswith("tor/")}
    if training and not tor:
        missing.append(f"no tor/* metric at step {max(training)} (was ToR on?)")
    columns = ("step", *STEP_COLUMNS, *(f"peak {name}" for name in PEAK_MEMORY))
    lines = [" | ".join(columns)]
    for step, metrics in training.items():
        cells = [metrics.get(name) for name in STEP_COLUMNS] + [peak(metrics, name) for name in PEAK_MEMORY]
        lines.append(" | ".join([str(step), *map(_cell, cells)]))
    later = [metrics["timing_s/step"] for step, metrics in training.items() if step != min(training)]
    if later:
        lines.append(f"mean step time after the first step: {sum(later) / len(later):.1f} s over {len(later)} steps")
    for name in PEAK_MEMORY:
        values = [value for metrics in training.values() if (value := peak(metrics, name)) is not None]
        lines.append(f"peak {name} over the run: {_cell(max(values) if values else None)}")
    lines += [f"{name} = {value:.4g}" for name, value in tor.items()]
    validated = [step for step, metrics in steps.items() if validation_accuracies(metrics)]
    if validated:
        for n, accuracies in validation_accuracies(steps[max(validated)]).items():
            lines += [
                f"validation step {max(validated)}: {source} acc mean@{n} = {acc:.3f}"
                for source, acc in accuracies.items()
            ]
    return "\n".join(lines), missing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.launch.smoke_summary",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", type=Path, help="the run's folder (OUTPUT_DIR/<experiment>, with metrics/*.jsonl)")
    args = parser.parse_args(argv)
    text, missing = summarize(read_metrics(args.run_dir))
    print(text)
    for problem in missing:
        print(f"{args.run_dir}: {problem}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
