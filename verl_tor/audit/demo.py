"""``make audit``: the audit on the CPU demo, before and after training, against the task's ground truth.

    python -m verl_tor.audit.demo [--demo DEMO_DIR] [--out DIR] [--methods tor,grpo]

Audits, on the demo's held-out pictures (``DEMO_DIR/data/val.parquet``, with the demo's sampling settings), the
warm-start model (``DEMO_DIR/warm_start/model``) and the last GRPO+ToR checkpoint
(``DEMO_DIR/grpo_tor/checkpoints/global_step_<last>/actor/huggingface``), and writes ``DIR/audit_table.md``: per
model, method and set, the share of tokens selected and its precision and recall for the tokens only the image
decides (the colour word; :func:`verl_tor.demo.task.token_labels`). Without ``--demo`` it uses the newest complete
run under ``outputs/demo/``, or runs ``python -m verl_tor.demo --smoke`` first (2 steps per arm: a few minutes).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

from verl_tor.audit import AUDIT_JSON
from verl_tor.audit.methods import DEFAULT_METHODS
from verl_tor.demo.run import TOR, DemoSettings

CHECKPOINT_HF = os.path.join("checkpoints", "global_step_*", "actor", "huggingface")


def last_tor_checkpoint(demo_dir: str) -> str | None:
    """The HF folder of the ToR arm's last saved step, or None."""
    found = glob.glob(os.path.join(demo_dir, TOR.directory, CHECKPOINT_HF))
    return max(found, key=lambda path: int(path.split("global_step_")[1].split(os.sep)[0])) if found else None


def newest_demo(root: str = os.path.join("outputs", "demo")) -> str | None:
    """The newest run under ``root`` that has a warm start and a ToR checkpoint."""
    runs = sorted(glob.glob(os.path.join(root, "*")), key=os.path.getmtime, reverse=True)
    return next((run for run in runs if last_tor_checkpoint(run) and os.path.isdir(warm_start(run))), None)


def warm_start(demo_dir: str) -> str:
    return os.path.join(demo_dir, "warm_start", "model")


def table(audits: dict[str, dict]) -> str:
    """The Markdown table of precision and recall per audited model, method and set."""
    lines = [
        "| model | method / set | selected | precision (image tokens) | recall (image tokens) | mean weight |",
        "|---|---|---|---|---|---|",
    ]
    for label, audit in audits.items():
        for name, method in audit["methods"].items():
            truth = method["ground_truth"] or {}
            if not method["sets"]:
                lines.append(f"| {label} | {name} (every token) | 1.00 | – | – | {method['mean_weight']:.2f} |")
            for set_name, selected in method["sets"].items():
                scores = truth.get(set_name, {})
                cells = [_cell(selected["fraction"]), _cell(scores.get("precision")), _cell(scores.get("recall"))]
                lines.append(f"| {label} | {name} / {set_name} | {' | '.join(cells)} | {method['mean_weight']:.2f} |")
    base = {label: audit["ground_truth"] for label, audit in audits.items()}
    notes = [
        f"{label}: {audit['n_samples']} responses, {audit['n_valid_tokens']} tokens, of which "
        f"{_cell(base[label]['image_share'])} only the image decides (a selection blind to the image has that "
        f"precision on average)"
        for label, audit in audits.items()
        if base[label]
    ]
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.audit.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", help="a demo run folder (default: the newest complete one, else a smoke run)")
    parser.add_argument("--out", help="output folder (default outputs/audit-demo/<time>)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out or os.path.join("outputs", "audit-demo", time.strftime("%Y%m%d-%H%M%S")))
    demo_dir = args.demo or newest_demo()
    demo_dir = demo_dir and os.path.abspath(demo_dir)
    if demo_dir is None:
        demo_dir = os.path.join(out, "demo")
        print(f"no complete demo run under outputs/demo: running the smoke demo into {demo_dir}", flush=True)
        subprocess.run([sys.executable, "-m", "verl_tor.demo", "--smoke", "--out", demo_dir], check=True)
    checkpoint = last_tor_checkpoint(demo_dir)
    if checkpoint is None:
        sys.exit(f"{demo_dir} has no ToR checkpoint ({os.path.join(TOR.directory, CHECKPOINT_HF)})")
    step = checkpoint.split("global_step_")[1].split(os.sep)[0]
    settings = DemoSettings()
    models = {"warm start": warm_start(demo_dir), f"GRPO+ToR step {step}": checkpoint}
    audits, pages = {}, []
    for label, model in models.items():
        target = os.path.join(out, label.replace(" ", "_").replace("+", ""))
        print(f"== audit of the {label} model: {model}", flush=True)
        command = [sys.executable, "-m", "verl_tor.audit", model, os.path.join(demo_dir, "data", "val.parquet")]
        command += ["--cpu", "--methods", args.methods, "--out", target, "--seed", "0"]
        command += ["--prompts", str(settings.prompts_per_step), "--n", str(settings.responses_per_prompt)]
        command += ["--response-length", str(settings.response_length)]
        command += ["--", "+actor_rollout_ref.rollout.engine_kwargs.hf.seeded_sampling=true"]
        subprocess.run(command, check=True)
        with open(os.path.join(target, AUDIT_JSON), encoding="utf-8") as f:
            audits[label] = json.load(f)
        pages.append(os.path.join(target, "audit.html"))
    path = os.path.join(out, "audit_table.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"Audit of the CPU demo {demo_dir}: held-out pictures, methods {args.methods}\n\n" + table(audits))
    print(open(path, encoding="utf-8").read())
    print("pages:\n" + "\n".join(f"  {page}" for page in pages))


if __name__ == "__main__":
    main()
