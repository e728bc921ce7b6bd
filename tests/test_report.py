"""``verl_tor.eval.report`` on run folders laid out as the recipes write them, with metrics files written by veRL's own
``FileLogger`` (the "file" backend of ``trainer.logger``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from eval_fixtures import fake_judge, write_benchmark, write_evaluation
from verl.utils.tracking import FileLogger

from verl_tor.eval.grades import PRESENT, REMOVED
from verl_tor.eval.report import PAPER_TABLE4, main, validation_accuracies

BENCHMARK_ACCURACY = {
    "mathverse": 0.512,
    "mathvision": 0.2634,
    "mathvista": 0.7049,
    "wemath": 0.6951,
    "hallusionbench": 0.7,
}
AVG8_ACCURACY = {"mathverse": 0.48, "mathvision": 0.25, "mathvista": 0.69, "wemath": 0.66, "hallusionbench": 0.68}


def log_metrics(folder: Path, launch: str, steps: dict[int, dict[str, float]], monkeypatch) -> None:
    """Write ``steps`` the way a recipe run does: veRL's FileLogger at ``folder/metrics/<launch>.jsonl``."""
    (folder / "metrics").mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(folder / "metrics" / f"{launch}.jsonl"))
    logger = FileLogger(project_name="verl_tor", experiment_name=folder.name)
    for step, data in steps.items():
        logger.log(data=data, step=step)
    logger.finish()


def write_info(folder: Path, **info: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(info))


def training_run(folder: Path, label: str, model: str) -> Path:
    """A training run's folder with the run.json a recipe writes (Geometry3K, not a smoke run)."""
    write_info(
        folder, kind="train", experiment=folder.name, label=label, recipe_model=model, train_set="geo3k", smoke="0"
    )
    return folder


def training_step(step: int, geo3k: float | None = None) -> dict[str, float]:
    metrics = {
        "critic/score/mean": 0.1 * step,
        "response_length/mean": 300.0 + step,
        "tor/reasoning_fraction": 0.3,
        "tor/perception_fraction": 0.28,
        "tor/overlap_fraction": 0.1,
    }
    if geo3k is not None:
        metrics["val-core/geo3k/acc/mean@1"] = geo3k
    return metrics


def evaluation(accuracy: dict[str, float], n: int) -> dict[int, dict[str, float]]:
    metrics = {f"val-core/{source}/acc/mean@{n}": value for source, value in accuracy.items()}
    metrics |= {f"val-aux/{source}/reward/mean@{n}": value + 0.05 for source, value in accuracy.items()}
    return {0: metrics}


@pytest.fixture
def runs(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A 7B Geometry3K DAPO + ToR run with greedy and avg@8 evaluations, and a 3B GRPO run (resumed once) with
    only training-time validation."""
    paper_run = training_run(tmp_path / "qwen2_5_vl_7b_geo3k_dapo_tor", "DAPO + ToR", "Qwen/Qwen2.5-VL-7B-Instruct")
    log_metrics(
        paper_run, "20260101T000000Z", {0: {"val-core/geo3k/acc/mean@1": 0.4}, 1: training_step(1)}, monkeypatch
    )
    for mode, accuracy, n in (("greedy", BENCHMARK_ACCURACY, 1), ("avg8", AVG8_ACCURACY, 8)):
        folder = paper_run / "eval" / f"global_step_60_{mode}"
        write_info(folder, kind="eval", experiment=f"eval_global_step_60_{mode}", step="global_step_60", mode=mode)
        log_metrics(folder, "20260102T000000Z", evaluation(accuracy, n), monkeypatch)

    other = training_run(tmp_path / "qwen2_5_vl_3b_geo3k_grpo", "GRPO", "Qwen/Qwen2.5-VL-3B-Instruct")
    log_metrics(other, "20260101T000000Z", {1: training_step(1), 2: training_step(2, geo3k=0.25)}, monkeypatch)
    # Resumed from step 1: step 2 again, then 3. The later launch's values win.
    log_metrics(other, "20260103T000000Z", {2: training_step(2, geo3k=0.35), 3: training_step(3)}, monkeypatch)
    return paper_run, other


def table_rows(report: str, title_start: str) -> list[list[str]]:
    """Rows (cells) of the table under the heading starting with ``title_start``."""
    section = report.split(title_start, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_table_4_layout_with_the_papers_numbers(runs, tmp_path):
    paper_run, other = runs
    main([str(paper_run), str(other), "--out", str(tmp_path / "results.md")])
    report = (tmp_path / "results.md").read_text()

    header = "| method | source | MathVerse | MathVision | MathVista | WeMath | HallusionBench | mean | Geometry3K |"
    assert header in report
    greedy = table_rows(report, "## Accuracy (%), greedy")
    paper = ["DAPO + ToR", "paper (7B, Geometry3K, LLM judge)", "53.4", "27.9", "72.6", "72.1", "71.8", "59.56", ""]
    assert greedy[0] == paper
    ours = greedy[1]
    assert ours[:2] == ["DAPO + ToR", "ours: qwen2_5_vl_7b_geo3k_dapo_tor, global_step_60"]
    assert ours[2:7] == [f"{100 * value:.1f}" for value in BENCHMARK_ACCURACY.values()]
    assert ours[7] == f"{100 * sum(BENCHMARK_ACCURACY.values()) / 5:.2f}"
    # A run outside the paper's setting: no paper row; its last training-time validation, resumed value.
    assert greedy[2] == ["GRPO", "ours: qwen2_5_vl_3b_geo3k_grpo, training-time validation, step 2"] + ["–"] * 6 + [
        "35.0"
    ]
    assert len(greedy) == 3

    [avg8] = table_rows(report, "## Accuracy (%), avg@8")
    assert avg8[2:8] == [f"{100 * v:.1f}" for v in AVG8_ACCURACY.values()] + [
        f"{100 * sum(AVG8_ACCURACY.values()) / 5:.2f}"
    ]
    # The grading note stands next to every table.
    assert report.count("Gemini-2.0-Flash") == report.count("## Accuracy") == 2
    assert "![training curves](results_curves.png)" in report
    assert (tmp_path / "results_curves.png").stat().st_size > 10_000


def test_rows_removed_by_the_length_filter_are_listed_per_run_and_evaluation(runs, tmp_path):
    """What verl_tor.launch.prompt_filter records in each launch's run.json (written here by its own function) appears in
    a table after the accuracies."""
    from verl_tor.launch.prompt_filter import record_in_run_json

    paper_run, other = runs
    train = {"files": ["/d/geo3k/train.parquet"], "max_prompt_length": 2048, "rows_before": 2101, "rows_after": 2090}
    train |= {"removed": 11, "removed_by_data_source": {"geo3k": 11}}
    record_in_run_json(paper_run / "run.json", "train", train)
    greedy = {"files": ["/d/mathverse/testmini.parquet"], "max_prompt_length": 8192, "rows_before": 10671}
    greedy |= {"rows_after": 10668, "removed": 3, "removed_by_data_source": {"mathverse": 1, "mathvista": 2}}
    record_in_run_json(paper_run / "eval" / "global_step_60_greedy" / "run.json", "validation", greedy)
    main([str(paper_run), str(other), "--out", str(tmp_path / "results.md")])
    report = (tmp_path / "results.md").read_text()
    rows = table_rows(report, "## Rows removed by the prompt-length filter")[1:]  # after the header
    assert rows == [
        ["qwen2_5_vl_7b_geo3k_dapo_tor", "train", "2,048", "2,090 / 2,101", "11", "Geometry3K 11"],
        [
            "qwen2_5_vl_7b_geo3k_dapo_tor/eval/global_step_60_greedy",
            "validation",
            "8,192",
            "10,668 / 10,671",
            "3",
            "MathVerse 1, MathVista 2",
        ],
    ]
    # The run's own entries are still read (its label and paper row).
    assert "| DAPO + ToR | paper (7B, Geometry3K, LLM judge) |" in report
    main([str(other), "--out", str(tmp_path / "other.md")])
    assert "prompt-length filter" not in (tmp_path / "other.md").read_text()


def test_eval_folder_alone_and_png_option(runs, tmp_path):
    paper_run, _ = runs
    png = tmp_path / "plots" / "curves.png"
    png.parent.mkdir()
    main([str(paper_run / "eval" / "global_step_60_greedy"), "--out", str(tmp_path / "r.md"), "--png", str(png)])
    report = (tmp_path / "r.md").read_text()
    [row] = table_rows(report, "## Accuracy (%), greedy")
    assert row[1] == "ours: eval_global_step_60_greedy"
    assert "paper" not in report.split("## Accuracy", 1)[1].split("|", 1)[1]
    assert "![training curves](plots/curves.png)" in report and png.is_file()


def test_validation_metric_names():
    metrics = {
        "val-core/verl_tor/colour/reward/mean@1": 0.5,  # a data source with a slash; no `acc`: the reward
        "val-core/mathvista/acc/mean@8": 0.7,
        "val-aux/mathvista/acc/std@8": 0.1,
        "val-core/mathvista/acc/best@8/mean": 0.9,
        "val-core/mathvista/acc/maj@8/mean": 0.8,
    }
    assert validation_accuracies(metrics) == {1: {"verl_tor/colour": 0.5}, 8: {"mathvista": 0.7}}


def test_paper_table_means_match_the_paper():
    for values in PAPER_TABLE4.values():
        assert round(sum(values[:5]) / 5, 2) == pytest.approx(values[5], abs=0.011)


def test_tor_evaluations_get_a_row_graded_as_the_harness(tmp_path, monkeypatch):
    """With a judge, each EVAL_PROTOCOL=tor evaluation gets a second row graded as ToR's harness (rows that share a
    question graded against their own answers), naming the judge and the responses a failed call left ungraded."""
    rows = [
        ("wemath", "Which shape?", "A", "multiple_choice"),
        ("wemath", "Which shape?", "B", "multiple_choice"),  # the same text, another answer
        ("hallusionbench", "Is it red?", "yes", "yes_no"),
        ("hallusionbench", "Is it red?", "no", "yes_no"),
    ]
    data = write_benchmark(tmp_path / "bench.parquet", rows)
    responses = {
        "wemath:testmini:0": ["so ANSWER=A"],
        "wemath:testmini:1": ["so ANSWER=A"],
        "hallusionbench:testmini:0": ["\\boxed{yes}"],
        "hallusionbench:testmini:1": ["FAIL"],  # HallusionBench asks no judge: graded wrong by rule, not ungraded
    }
    eval_dir = write_evaluation(tmp_path / "eval_model_greedy", data, responses, step="model")
    # veRL's metrics: the rule found no \boxed{} answer in the WeMath responses.
    log_metrics(eval_dir, "20260102T000000Z", evaluation({"wemath": 0.0, "hallusionbench": 0.5}, 1), monkeypatch)
    out = tmp_path / "results.md"
    with fake_judge() as (url, _):
        main([str(eval_dir), "--out", str(out), "--judge-url", url, "--judge-model", "judge-model",
              "--judge-cache", str(tmp_path / "cache.sqlite3")])  # fmt: skip
    greedy = table_rows(out.read_text(), "## Accuracy (%), greedy")
    assert greedy[0][1] == "ours: eval_model_greedy" and greedy[0][5:7] == ["0.0", "50.0"]
    assert greedy[1][1] == "ours: eval_model_greedy, graded as ToR's harness by judge judge-model"
    assert greedy[1][5:7] == ["50.0", "50.0"]  # WeMath: A right for the first row only
    assert "WeMath: LLM extraction of the option letter" in out.read_text()
    with pytest.raises(SystemExit):
        main([str(eval_dir), "--out", str(out), "--judge-url", url])
    # Without a judge the greedy table says how to get the harness's grading.
    main([str(eval_dir), "--out", str(out)])
    assert "add `--judge-url URL --judge-model NAME`" in out.read_text()


def test_accuracy_without_the_image_and_the_paired_comparison(tmp_path, monkeypatch):
    """IMAGE=removed evaluations: a row of their own and the with / without table; --compare: the paired
    comparison of the second run against the first, with its plot."""
    rows = [("mathvista", f"Q{i}?", "A", "multiple_choice") for i in range(6)]
    data = write_benchmark(tmp_path / "bench.parquet", rows)
    runs = []
    for name, label, present, removed in (
        ("grpo", "GRPO", "110100", "100000"),
        ("tor", "GRPO + ToR", "111100", "000000"),
    ):
        run = training_run(tmp_path / name, label, "Qwen/Qwen2.5-VL-3B-Instruct")
        for image, grades, suffix in ((PRESENT, present, ""), (REMOVED, removed, "_noimage")):
            folder = run / "eval" / f"global_step_60_tor{suffix}"
            answers = {
                f"mathvista:testmini:{i}": ["\\boxed{A}" if g == "1" else "\\boxed{B}"] for i, g in enumerate(grades)
            }
            write_evaluation(folder, data, answers, step="global_step_60", image=image)
            accuracy = {"mathvista": grades.count("1") / len(grades)}
            log_metrics(folder, "20260102T000000Z", evaluation(accuracy, 1), monkeypatch)
        runs.append(run)
    out = tmp_path / "results.md"
    main([str(runs[0]), str(runs[1]), "--out", str(out), "--compare"])
    report = out.read_text()
    greedy = table_rows(report, "## Accuracy (%), greedy")
    assert [row[1] for row in greedy] == [
        "ours: grpo, global_step_60",
        "ours: grpo, global_step_60, image removed",
        "ours: tor, global_step_60",
        "ours: tor, global_step_60, image removed",
    ]
    gaps = table_rows(report, "## Accuracy (%) with and without the image")
    assert gaps == [
        ["GRPO", "ours: grpo, global_step_60", "1", "50.0 / 16.7 (−33.3)"],
        ["GRPO + ToR", "ours: tor, global_step_60", "1", "66.7 / 0.0 (−66.7)"],
    ]
    section = report.split("## Paired comparison", 1)[1]
    assert "GRPO + ToR − GRPO = +16.7 [" in section and "p = 1" in section  # one discordant item
    assert "![paired differences](results_compare.png)" in section
    assert (tmp_path / "results_compare.png").stat().st_size > 5_000


def test_a_path_without_results_fails_naming_it(tmp_path, capsys):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(SystemExit) as stopped:
        main([str(empty), "--out", str(tmp_path / "r.md")])
    assert str(empty) in str(stopped.value) and "no validation results" in str(stopped.value)
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "typo"), "--out", str(tmp_path / "r.md")])
    assert stopped.value.code == 2 and "no such run or evaluation folder" in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()


def test_help_names_the_module():
    done = subprocess.run([sys.executable, "-m", "verl_tor.eval.report", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m verl_tor.eval.report")


def test_tor_runs_link_their_token_inspector_page(runs, tmp_path):
    """A run whose trainer recorded tokens (its tor_inspect.jsonl, written here by the recorder itself) gets its
    inspector page written and linked; a run without one gets neither."""
    import torch

    from verl_tor.inspect.record import InspectConfig, InspectRecorder, StepBatch

    paper_run, other = runs

    class Tokenizer:
        def decode(self, ids, skip_special_tokens=False):
            return " ".join(f"t{i}" for i in ids)

    recorder = InspectRecorder(InspectConfig(samples_per_step=1), str(paper_run / "checkpoints"), Tokenizer())
    recorder.write_run_header(paper_run.name, {})
    one = torch.ones(3)
    batch = StepBatch(
        rows=[0], prompts=[torch.tensor([1, 2])], responses=[torch.tensor([3, 4, 5])], response_mask=[one.bool()],
        entropy=[one], sensitivity=[one], reasoning=[one.bool()], perception=[~one.bool()], weights=[one],
        advantages=[one], loss_advantages=[one], rho=None, metrics={f"{n}_{k}": 1.0 for n in ("reasoning", "perception") for k in ("threshold", "fraction")}
        | {"overlap_fraction": 0.0},
    )  # fmt: skip
    sample = recorder.sample_record(
        batch, 0, uid="u", data_source="geo3k", extra_info=None, reward=1.0, acc=1.0, multi_modal_inputs=None
    )
    recorder.record_step(1, batch, [sample])

    main([str(paper_run), str(other), "--out", str(tmp_path / "results.md")])
    report = (tmp_path / "results.md").read_text()
    section = report.split("## Token inspector", 1)[1]
    page = paper_run / "inspect.html"
    links = [line for line in section.splitlines() if line.startswith("- [")]
    assert links == [f"- [{paper_run.name}]({page.relative_to(tmp_path)})"]
    assert "t3" in page.read_text()
    assert not (other / "inspect.html").exists()
