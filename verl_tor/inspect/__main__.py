"""``python -m verl_tor.inspect RUN_DIR [--out page.html]``: the token inspector's page of a run (one HTML file)."""

from __future__ import annotations

import argparse

from verl_tor.inspect import INSPECT_FILE
from verl_tor.inspect.page import PAGE_FILE, write_page


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.inspect",
        description=f"Write the token inspector page of a ToR run: {INSPECT_FILE} (in RUN_DIR or RUN_DIR/checkpoints)"
        " as one self-contained HTML file that opens from disk.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run's folder (trainer.default_local_dir or above it)")
    parser.add_argument("--out", help=f"the page to write (default RUN_DIR/{PAGE_FILE})")
    parser.add_argument("--steps", help="comma-separated steps to keep (default: every recorded step)")
    parser.add_argument("--samples-per-step", type=int, help="keep the first N recorded samples of each step")
    args = parser.parse_args(argv)
    steps = [int(step) for step in args.steps.split(",")] if args.steps else None
    try:
        out = write_page(args.run_dir, args.out, steps, args.samples_per_step)
    except FileNotFoundError as error:
        parser.exit(1, f"{parser.prog}: {error}\n")
    print(out)


if __name__ == "__main__":
    main()
