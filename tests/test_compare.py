"""``python -m verl_tor.eval.compare`` on evaluation folders laid out as ``recipes/eval.sh`` leaves them: numbers
against a hand computation, avg@k items kept whole, seeds, the judge, the sentence, the plot and the refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from eval_fixtures import fake_judge, write_benchmark, write_evaluation

from verl_tor.eval.compare import main
from verl_tor.eval.stats import paired_difference

RIGHT, WRONG = "<think>ok</think> \\boxed{A}", "<think>ok</think> \\boxed{B}"
N_ITEMS = 12


@pytest.fixture
def benchmark(tmp_path):
    rows = [("mathvista", f"Question {i}?", "A", "multiple_choice") for i in range(N_ITEMS)]
    rows += [("wemath", f"Shape {i}?", "A", "multiple_choice") for i in range(4)]
    return write_benchmark(tmp_path / "bench.parquet", rows)


def run_with_evaluation(tmp_path, name: str, label: str, benchmark, grades: dict[str, list[list[int]]], **info):
    """A training run folder (``run.json`` with its label) with one evaluation of ``grades`` (source -> per item
    the 0/1 grades of its samples)."""
    run = tmp_path / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"kind": "train", "label": label}))
    responses = {
        f"{source}:testmini:{i}": [RIGHT if g else WRONG for g in samples]
        for source, items in grades.items()
        for i, samples in enumerate(items)
    }
    protocol = info.pop("protocol", "tor")
    write_evaluation(
        run / "eval" / f"global_step_60_{protocol}", benchmark, responses, protocol, step="global_step_60", **info
    )
    return run


def ones(pattern: str) -> list[list[int]]:
    return [[int(c)] for c in pattern]


def test_greedy_comparison_numbers_sentence_and_plot(benchmark, tmp_path, capsys):
    # MathVista: 3 items right only in B, 1 only in A. McNemar: n = 4, X = 1: p = 2 (1 + 4) / 16 = 0.625.
    grpo = run_with_evaluation(
        tmp_path, "grpo", "GRPO", benchmark, {"mathvista": ones("110000111000"), "wemath": ones("0000")}
    )
    tor = run_with_evaluation(
        tmp_path, "tor", "GRPO + ToR", benchmark, {"mathvista": ones("011110111000"), "wemath": ones("1100")}
    )
    out, png = tmp_path / "compare.md", tmp_path / "compare.png"
    main([str(grpo), str(tor), "--out", str(out), "--png", str(png), "--bootstrap", "2000"])
    printed = capsys.readouterr().out.strip()
    report = out.read_text()
    row = next(line for line in report.splitlines() if line.startswith("| MathVista"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:4] == ["MathVista", "41.7", "58.3", "+16.7"]
    assert cells[5] == "0.62" and cells[6] == "McNemar exact"  # 0.625 to two digits and cells[7] == "12"
    mean = next(line for line in report.splitlines() if line.startswith("| mean of 2 benchmarks"))
    # Mean of the benchmarks' differences: (16.7 + 50) / 2.
    assert "+33.3" in mean
    assert printed.startswith("GRPO + ToR − GRPO = +33.3 [") and "points on the mean of 2 benchmarks, p = " in printed
    assert "MathVista +16.7 [" in printed and "WeMath +50.0 [" in printed and "rule-based grading" in printed
    assert printed in report and "![differences](compare.png)" in report
    assert png.stat().st_size > 5_000


def test_avg8_items_keep_their_samples_and_seeds_show_their_spread(benchmark, tmp_path, capsys):
    rng = np.random.default_rng(0)
    a = [rng.integers(0, 2, size=(N_ITEMS, 8)) for _ in range(2)]
    b = [np.maximum(x, rng.integers(0, 2, size=(N_ITEMS, 8))) for x in a]
    runs = {}
    for arm, seeds in (("dapo", a), ("dapo_tor", b)):
        runs[arm] = [
            run_with_evaluation(
                tmp_path, f"{arm}_s{s}", arm, benchmark, {"mathvista": grades.tolist()}, protocol="avg8"
            )
            for s, grades in enumerate(seeds)
        ]
    out = tmp_path / "c.md"
    main(
        [
            ",".join(map(str, runs["dapo"])),
            ",".join(map(str, runs["dapo_tor"])),
            "--protocol",
            "avg8",
            "--out",
            str(out),
        ]
    )
    row = next(line for line in out.read_text().splitlines() if line.startswith("| MathVista"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # Items keep both seeds' eight samples: 16 per item, the same numbers as the statistics module on them.
    expected = paired_difference(np.hstack(a), np.hstack(b), bootstrap=10_000, seed=0)
    assert cells[3] == f"{100 * expected.difference:+.1f}"
    assert cells[4] == f"[{100 * expected.low:+.1f}, {100 * expected.high:+.1f}]".replace("-", "−")
    assert cells[6] == expected.test and expected.test.startswith("sign-flip")
    assert cells[8:10] == [f"{100 * np.std([x.mean() for x in seeds], ddof=1):.1f}" for seeds in (a, b)]
    assert "avg@8 at T = 1.0" in capsys.readouterr().out


def test_tor_protocol_with_the_judge(benchmark, tmp_path, capsys):
    grpo = run_with_evaluation(tmp_path, "grpo", "GRPO", benchmark, {"mathvista": ones("1100")})
    tor = tmp_path / "tor"
    write_evaluation(
        tor, benchmark, {f"mathvista:testmini:{i}": ["ANSWER=A"] for i in range(3)} | {"mathvista:testmini:3": ["FAIL"]}
    )
    with fake_judge() as (url, _):
        main([str(grpo), str(tor), "--judge-url", url, "--judge-model", "qwen-judge", "--judge-retries", "0",
              "--judge-cache", str(tmp_path / "cache.sqlite3"), "--bootstrap", "500"])  # fmt: skip
    captured = capsys.readouterr()
    # The baseline's boxed "A"/"B" carry no ANSWER= marker: the judge extracts NONE for them (wrong); ToR's three
    # answers are right and its fourth call failed: that item is left out of both arms, and said so.
    assert captured.out.startswith("tor − GRPO = +100.0 [+100.0, +100.0] points on MathVista, p = 0.25")
    assert "graded as the harness by judge qwen-judge" in captured.out and "1 responses ungraded" in captured.out
    assert "1 judge calls failed" in captured.err


def test_refusals_name_the_path_and_the_reason(benchmark, tmp_path):
    grpo = run_with_evaluation(tmp_path, "grpo", "GRPO", benchmark, {"mathvista": ones("1100")})
    avg8 = run_with_evaluation(tmp_path, "other", "X", benchmark, {"mathvista": ones("1100")}, protocol="avg8")
    for args, message in (
        ([str(grpo), str(tmp_path / "missing")], "missing: no evaluation folder"),
        ([str(grpo), str(avg8)], "other: no evaluation folder, nor a run folder with an tor evaluation"),
        ([str(grpo), str(avg8 / "eval" / "global_step_60_avg8")], "protocol avg8, not tor"),
    ):
        with pytest.raises(SystemExit) as stopped:
            main(args)
        assert message in str(stopped.value)


def test_help_names_the_module():
    done = subprocess.run([sys.executable, "-m", "verl_tor.eval.compare", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m verl_tor.eval.compare")
