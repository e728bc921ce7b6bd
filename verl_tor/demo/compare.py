"""Compare two demo runs metric by metric: are runs with the same seed the same?

For each arm folder both runs have, every metric veRL logged at the same step in both is compared, except those
that measure the machine rather than the training (wall times, throughput, memory): the largest absolute
difference per metric, and the first step at which any training metric differs.

    python -m verl_tor.demo.compare RUN_A RUN_B
"""

from __future__ import annotations

import argparse
import math
import os

from verl_tor.demo import metrics

# Metrics of the machine, not of the training: they differ between any two runs.
MACHINE_PREFIXES = ("timing_s/", "timing_per_token_ms/", "perf/", "actor/perf/")


def differences(first: metrics.Records, second: metrics.Records) -> dict[str, tuple[float, int | None]]:
    """Per training metric logged at a step in both: (largest absolute difference, first step where it differs).

    NaN in both counts as equal; NaN in one only as an infinite difference.
    """
    result: dict[str, tuple[float, int | None]] = {}
    for step in sorted(first.keys() & second.keys()):
        for name in first[step].keys() & second[step].keys():
            if name.startswith(MACHINE_PREFIXES):
                continue
            a, b = first[step][name], second[step][name]
            if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
                continue
            if a == b or (math.isnan(a) and math.isnan(b)):
                gap = 0.0
            else:
                gap = math.inf if math.isnan(a) or math.isnan(b) else abs(a - b)
            largest, first_step = result.get(name, (0.0, None))
            if gap > 0 and first_step is None:
                first_step = step
            result[name] = (max(largest, gap), first_step)
    return result


def report(run_a: str, run_b: str) -> str:
    """A text report of :func:`differences` for every arm folder (with a ``metrics.jsonl``) both runs have."""
    lines = []
    arms = sorted(
        name
        for name in os.listdir(run_a)
        if os.path.isfile(os.path.join(run_a, name, "metrics.jsonl"))
        and os.path.isfile(os.path.join(run_b, name, "metrics.jsonl"))
    )
    for arm in arms:
        found = differences(
            metrics.read_metrics(os.path.join(run_a, arm, "metrics.jsonl")),
            metrics.read_metrics(os.path.join(run_b, arm, "metrics.jsonl")),
        )
        differing = {name: value for name, value in found.items() if value[0] > 0}
        lines.append(f"{arm}: {len(found)} metrics compared, {len(found) - len(differing)} identical at every step")
        first = min((step for _, step in differing.values() if step is not None), default=None)
        if first is not None:
            lines.append(f"  first step with a difference: {first}")
        for name, (gap, step) in sorted(differing.items(), key=lambda item: -item[1][0])[:8]:
            lines.append(f"  {name}: largest difference {gap:.3g} (first at step {step})")
    return "\n".join(lines) if lines else "no arm folder with metrics.jsonl in both runs"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.demo.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    args = parser.parse_args(argv)
    print(report(args.run_a, args.run_b))


if __name__ == "__main__":
    main()
