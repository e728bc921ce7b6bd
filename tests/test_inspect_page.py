"""The token inspector's reader and page (``verl_tor.inspect.reader``, ``verl_tor.inspect.page``, the CLI).

Everything is checked against a hand-made ``tor_inspect.jsonl``: three steps over two run headers (a resume that
redoes step 2), a last line the run is still writing, samples with zero, one and two images, correct and
incorrect ones (with and without ``acc``), and tokens that would break a careless page (``</div>``,
``</script>``, ``<!--``, ``&amp;``, newlines, tabs, an empty token, a NaN score). The browser test opens the page
in headless Chromium (Debian's ``chromium``) from disk and reads the DOM the page's script built.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys

import pytest
from browser_dom import chromium, dump_dom, needs_chromium, same_float, shown
from PIL import Image, ImageDraw

from verl_tor.inspect import INSPECT_FILE, TOKEN_SETS
from verl_tor.inspect.__main__ import main as inspect_main
from verl_tor.inspect.page import PAGE_FILE, render_page, write_page
from verl_tor.inspect.reader import find_inspect_file, read_records

# γ per set as the recorder writes w (γ_o = 0.1 so that "none" tokens carry a weight too); γ_p = 0.1 + 0.2 is
# 0.30000000000000004, which only an exact float format brings back unchanged.
GAMMA = {"reasoning": 1.0, "both": 1.0, "perception": 0.1 + 0.2, "none": 0.1}
TOR = {
    "reasoning_quantile": 0.3,
    "perception_quantile": 0.3,
    "reasoning_weight": 1.0,
    "perception_weight": 0.1 + 0.2,
    "other_weight": 0.1,
    "entropy_top_p": 0.95,
    "counterfactual": "remove_image",
}
INSPECT = {"samples_per_step": 3, "every_n_steps": 1, "thumbnail_px": 64}
# Tokens a page must show as they are: markup, entities, whitespace, an empty string, beyond-BMP text.
TRICKY = ["<think>", "\n", "</div>", " &amp;", " ", "\t", "", "</script>", "<!--", ' "x"', "🙂", "\n\n", "</think>"]


def png_data_url(colour: str, size: int = 64) -> str:
    """A small PNG (a coloured disc on white) as the recorder embeds images: a data URL."""
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).ellipse((8, 8, size - 8, size - 8), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


LABELS = {"method": "tor", "reasoning": "top-p entropy (p = 0.95); T_r = top 30% of the batch",
          "perception": "abs_log_ratio of Δ log π under remove_image; T_p = top 30% of the batch",
          "use": "set weights: T_r only 1, T_p only 0.5, both 1, other 0"}  # fmt: skip


def run_header(started: str, method: str = "tor") -> dict:
    return {
        "kind": "run",
        "version": 2,
        "experiment": "geo3k_grpo_tor",
        "started": started,
        "tor": {**TOR, "method": method},
        "weight_target": "loss",  # w goes through rollout_is_weights: the loss reads the advantage unweighted
        "labels": {**LABELS, "method": method},
        "inspect": INSPECT,
    }


def sample(index: int, tokens: list[tuple], *, reward: float, acc: float | None, images: int, adv: float) -> dict:
    """A sample record; ``tokens`` are ``(text, set, H, S)`` or ``(text, set, H, S, valid)``."""
    names = ("id", "text", "H", "S", "set", "w", "adv", "adv_loss", "rho", "valid")
    columns: dict[str, list] = {name: [] for name in names}
    for position, (text, token_set, entropy, sensitivity, *valid) in enumerate(tokens):
        is_valid = valid[0] if valid else True
        weight = GAMMA[token_set] if is_valid else 0.0
        row = {"id": 1000 + position, "text": text, "H": entropy, "S": sensitivity, "set": token_set}
        row |= {"w": weight, "adv": adv, "adv_loss": adv, "rho": 0.5 + 0.125 * (position % 3), "valid": is_valid}
        for name, value in row.items():
            columns[name].append(value)
    return {
        "index": index,
        "uid": f"uid-{index}",
        "data_source": "hiyouga/geometry3k",
        "prompt": f"<|vision_start|><|image_pad|><|vision_end|>Find x in triangle {index} & answer in \\boxed{{}}.",
        "reward": reward,
        "acc": acc,
        "has_image": images > 0,
        "images": [png_data_url(colour) for colour in ("tomato", "steelblue")[:images]],
        "tokens": columns,
    }


def step_record(step: int, samples: list[dict], thresholds: tuple[float, float]) -> dict:
    edges = [0.25 * k for k in range(9)]
    return {
        "kind": "step",
        "step": step,
        "n_valid_tokens": 412 + step,
        "n_samples": 16,
        "thresholds": {"reasoning": thresholds[0], "perception": thresholds[1]},
        "fractions": {"reasoning": 0.3, "perception": 0.25 if thresholds[1] > 0 else 0.0, "overlap": 0.08},
        "histograms": {
            "entropy": {"edges": edges, "counts": [290, 31, 25, 18, 20, 12, 9, 5]},
            "sensitivity": {"edges": [e / 2 for e in edges], "counts": [301, 40, 30, 15, 12, 8, 4, 2 + step]},
        },
        "top_tokens": {
            "reasoning": [["<think>", 9 + step], ["\n", 7], [" circle", 3]],
            "perception": [[" red", 5], ["</div>", 2]] if thresholds[1] > 0 else [],
        },
        "samples": samples,
    }


def reasoning_text(n: int) -> list[tuple]:
    """``n`` plain tokens cycling through the four sets (a long response that has to wrap)."""
    words = [" so", " the", " angle", " is", " 60", " degrees", ",", " hence"]
    return [(words[k % len(words)], TOKEN_SETS[k % 4], 0.1 * (k % 13), 0.05 * (k % 7)) for k in range(n)]


def hand_made_steps() -> dict[int, dict]:
    """The step records the reader must keep: step 2 is the resumed run's, not the first run's."""
    tricky = [(text, TOKEN_SETS[k % 4], 0.5 + 0.01 * k, 0.2 * (k % 3)) for k, text in enumerate(TRICKY)]
    tricky.append(("<|im_end|>", "none", float("nan"), 0.0, False))  # not trained (valid false), NaN score
    step1 = [
        sample(3, tricky, reward=1.0, acc=1.0, images=1, adv=0.75),
        sample(7, reasoning_text(12), reward=0.0, acc=0.0, images=0, adv=-0.5),
        sample(11, reasoning_text(5), reward=0.5, acc=None, images=1, adv=0.25),  # correct by reward
    ]
    step2 = [
        sample(0, reasoning_text(9), reward=0.0, acc=None, images=0, adv=-1.25),  # incorrect by reward
        sample(5, [(" A", "perception", 0.0, 1.5), (" B", "both", 2.0, 1.5)], reward=0.1, acc=0.5, images=2, adv=1.0),
    ]
    step3 = [sample(2, reasoning_text(160), reward=1.0, acc=1.0, images=1, adv=0.5)]
    return {
        1: step_record(1, step1, (0.9, 0.4)),
        2: step_record(2, step2, (1.1, 0.0)),
        3: step_record(3, step3, (0.7, 0.3)),
    }


def write_hand_made_file(path: str) -> dict[int, dict]:
    """Writes the hand-made file (a superseded step 2, a resume, a half-written step 4); the steps it holds."""
    steps = hand_made_steps()
    superseded = step_record(2, [sample(9, reasoning_text(4), reward=1.0, acc=1.0, images=0, adv=2.0)], (1.0, 0.5))
    lines = [run_header("2026-12-01T10:00:00"), steps[1], superseded, run_header("2026-12-01T12:30:00")]
    lines += [steps[2], steps[3]]
    with open(path, "w", encoding="utf-8") as f:
        for record in lines:
            f.write(json.dumps(record) + "\n")
        f.write(json.dumps(step_record(4, [], (1.0, 1.0)))[:57])  # the run is writing step 4 right now
    return steps


@pytest.fixture
def run_dir(tmp_path) -> str:
    """A run folder with the hand-made file where the recorder puts it by default (``checkpoints/``)."""
    os.makedirs(tmp_path / "checkpoints")
    write_hand_made_file(str(tmp_path / "checkpoints" / INSPECT_FILE))
    return str(tmp_path)


def is_correct(record: dict) -> bool:
    """The page's rule, stated in the page: acc >= 0.5, or reward > 0 where acc is null."""
    return record["acc"] >= 0.5 if record["acc"] is not None else record["reward"] > 0


def test_read_records_skips_the_line_being_written_and_keeps_the_resumed_step(run_dir):
    expected = hand_made_steps()
    runs, steps = read_records(os.path.join(run_dir, "checkpoints", INSPECT_FILE))
    assert [run["started"] for run in runs] == ["2026-12-01T10:00:00", "2026-12-01T12:30:00"]
    assert [step["step"] for step in steps] == [1, 2, 3]  # step 4 is cut short
    assert [step["run_index"] for step in steps] == [0, 1, 1]
    assert [s["index"] for s in steps[1]["samples"]] == [0, 5]  # the resumed run's step 2, not the first run's
    for step in steps:
        want = json.loads(json.dumps(expected[step["step"]]))  # as stored: tuples become lists
        got = {key: value for key, value in step.items() if key != "run_index"}
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)


def test_read_records_warns_about_a_broken_line_in_the_middle(tmp_path):
    path = tmp_path / INSPECT_FILE
    good = hand_made_steps()[1]
    # A run killed mid-write, then resumed: the broken line is followed by the resumed run's records.
    path.write_text(json.dumps(run_header("a")) + "\n" + json.dumps(good)[:40] + "\n\n" + json.dumps(good) + "\n")
    with pytest.warns(UserWarning, match=f"{INSPECT_FILE}:2: not a JSON record"):
        runs, steps = read_records(str(path))
    assert len(runs) == 1 and [step["step"] for step in steps] == [1]


def test_find_inspect_file_in_run_dir_or_its_checkpoints(tmp_path):
    assert find_inspect_file(str(tmp_path)) is None
    os.makedirs(tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / INSPECT_FILE).write_text("")
    assert find_inspect_file(str(tmp_path)) == str(tmp_path / "checkpoints" / INSPECT_FILE)
    (tmp_path / INSPECT_FILE).write_text("")
    assert find_inspect_file(str(tmp_path)) == str(tmp_path / INSPECT_FILE)


# ---- page (no browser) ----------------------------------------------------------------------------------------


def embedded_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="tor-data">(.*?)</script>', page, re.S)
    assert match, "no data block"
    return json.loads(match.group(1))


def test_page_embeds_every_record_once_and_tokens_cannot_end_the_script(run_dir):
    runs, steps = read_records(find_inspect_file(run_dir))
    page = render_page(runs, steps, source="x.jsonl")
    # "</script>" and "<!--" are tokens: only the page's own two script blocks may close.
    assert page.count("</script>") == 2 and page.count("<!--") == 0
    data = embedded_data(page)
    assert [step["step"] for step in data["steps"]] == [1, 2, 3]
    assert data["runs"] == runs
    for got, want in zip(data["steps"], steps, strict=True):
        for got_sample, want_sample in zip(got["samples"], want["samples"], strict=True):
            assert got_sample["tokens"]["text"] == want_sample["tokens"]["text"]
            # NaN (allowed in the record file, not in JSON) travels as a string that Number() and float() read.
            pairs = zip(got_sample["tokens"]["H"], want_sample["tokens"]["H"], strict=True)
            assert all(same_float(float(a), b) for a, b in pairs)


def test_page_is_self_contained(run_dir):
    page = open(write_page(run_dir), encoding="utf-8").read()
    assert not re.search(r"<link\b|@import|<script[^>]*\bsrc=", page)
    # No address that a browser would fetch: images are data URLs, the SVG namespace is a name.
    assert not re.search(r"""(?:src|href|url)\s*[=(]\s*["']?(?:https?:)?//""", page)
    assert re.findall(r"https?://[^\s\"')]+", page) == ["http://www.w3.org/2000/svg"]


def test_cli_writes_the_page_next_to_the_run_or_where_asked(run_dir, tmp_path, capsys):
    inspect_main([run_dir])
    default = os.path.join(run_dir, PAGE_FILE)
    assert capsys.readouterr().out.strip() == default
    data = embedded_data(open(default, encoding="utf-8").read())
    # The file relative to the run's parent folder: no absolute path of the machine that wrote the page.
    parent = os.path.dirname(os.path.abspath(run_dir.rstrip(os.sep)))
    assert os.path.join(parent, data["source"]) == find_inspect_file(run_dir) and not os.path.isabs(data["source"])
    other = str(tmp_path / "elsewhere.html")
    inspect_main([run_dir, "--out", other])
    assert os.path.getsize(other) == os.path.getsize(default)
    # A smaller page of a long run: some steps, the first N samples of each.
    first = data["steps"][0]
    inspect_main([run_dir, "--out", other, "--steps", str(first["step"]), "--samples-per-step", "1"])
    small = embedded_data(open(other, encoding="utf-8").read())
    assert [step["step"] for step in small["steps"]] == [first["step"]]
    assert small["steps"][0]["samples"] == first["samples"][:1]
    with pytest.raises(SystemExit) as stop:
        inspect_main([str(tmp_path / "checkpoints" / "nothing-here")])
    assert stop.value.code == 1
    assert f"no {INSPECT_FILE} in" in capsys.readouterr().err


def test_cli_runs_as_a_module(run_dir):
    done = subprocess.run(
        [sys.executable, "-m", "verl_tor.inspect", run_dir], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == os.path.join(run_dir, PAGE_FILE)


# ---- browser -------------------------------------------------------------------------------------------------


@needs_chromium
def test_browser_shows_every_recorded_token_in_order_with_its_set_and_weight(run_dir, tmp_path):
    page = write_page(run_dir)
    dom = dump_dom("file://" + page, tmp_path)
    steps = hand_made_steps()
    assert dom.sections == ["1", "2", "3"]
    assert set(dom.samples) == {(str(n), str(s["index"])) for n, step in steps.items() for s in step["samples"]}
    for n, step in steps.items():
        for record in step["samples"]:
            shown_sample = dom.samples[(str(n), str(record["index"]))]
            assert shown_sample["attrs"]["data-correct"] == str(is_correct(record)).lower()
            tokens = record["tokens"]
            assert [text for text, *_ in shown_sample["tokens"]] == [shown(text) for text in tokens["text"]]
            assert [token_set for _, token_set, *_ in shown_sample["tokens"]] == tokens["set"]
            weights = [float(weight) for _, _, weight, _ in shown_sample["tokens"]]
            assert all(same_float(a, b) for a, b in zip(weights, tokens["w"], strict=True)), (weights, tokens["w"])
            assert [int(i) for *_, i in shown_sample["tokens"]] == list(range(len(tokens["text"])))
        # Histograms: one bar per bin; a threshold line only where something was selected.
        bins = [len(step["histograms"][name]["counts"]) for name in ("entropy", "sensitivity")]
        assert [h["bars"] for h in dom.histograms[str(n)]] == bins
        assert [h["threshold"] for h in dom.histograms[str(n)]] == [v > 0 for v in step["thresholds"].values()]
        for name in ("reasoning", "perception"):
            assert dom.top_tokens[(str(n), name)] == [shown(text, breaks=False) for text, _ in step["top_tokens"][name]]
    # The mixed-up tokens are whole spans: "</div>" did not close anything, "<think>" opened nothing.
    assert sum(text in ("<think>", "</div>", "</script>") for text, *_ in dom.samples[("1", "3")]["tokens"]) == 3


@needs_chromium
def test_browser_details_panel_of_a_linked_token(run_dir, tmp_path):
    """``#tok=STEP.SAMPLE.I`` opens the token in the details panel, as a click does."""
    page = write_page(run_dir)
    record = hand_made_steps()[1]["samples"][0]
    for i in (TRICKY.index("</script>"), len(TRICKY)):  # a perception token and the invalid NaN-score one
        dom = dump_dom(f"file://{page}#tok=1.3.{i}", tmp_path)
        assert [dom.details_attrs[f"data-{key}"] for key in ("step", "sample", "i")] == ["1", "3", str(i)]
        tokens = record["tokens"]
        assert json.loads(dom.details["text"]) == tokens["text"][i]
        assert dom.details["set"] == tokens["set"][i]
        assert dom.details["valid"] == str(tokens["valid"][i]).lower()
        for name in ("H", "S", "w", "adv", "adv_loss", "rho", "id"):
            assert same_float(float(dom.details[name]), tokens[name][i]), name
        assert float(dom.details["H_threshold"]) == hand_made_steps()[1]["thresholds"]["reasoning"]
        assert dom.details["weight_target"] == "loss"


@needs_chromium
def test_browser_labels_the_method_whose_scores_and_sets_it_shows(tmp_path):
    """The page header names the method of the latest run header (text and ``data-method``), with its scores,
    sets and use in words; each step's section carries the method of the run that recorded it."""
    path = tmp_path / INSPECT_FILE
    steps = hand_made_steps()
    lines = [run_header("2026-12-01T10:00:00", "tor"), steps[1], run_header("2026-12-01T12:30:00", "vppo"), steps[2]]
    path.write_text("".join(json.dumps(record) + "\n" for record in lines))
    page = write_page(str(tmp_path))
    dom = dump_dom("file://" + page, tmp_path)
    assert dom.header_attrs["data-method"] == "vppo"
    assert dom.method_text.startswith("method: vppo")
    for key in ("reasoning", "perception", "use"):
        assert f"{key}: {LABELS[key]}" in dom.method_text
    assert dom.section_methods == {"1": "tor", "2": "vppo"}
    assert "Token inspector (vppo)" in open(page, encoding="utf-8").read()


@needs_chromium
def test_browser_screenshot(run_dir, tmp_path):
    page = write_page(run_dir)
    png = tmp_path / "inspect_page.png"
    # Step 1 (the tricky tokens) with one token in the details panel.
    url = f"file://{page}#tok=1.3.{TRICKY.index('</div>')}"
    chromium(url, tmp_path, f"--screenshot={png}", "--window-size=1400,1000", "--hide-scrollbars")
    image = Image.open(png).convert("RGB")
    assert image.size == (1400, 1000)
    # Everything coloured is built by the page's script: the sets' colours (its CSS) show only if it ran.
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 20)}
    css = open(page, encoding="utf-8").read()
    for name in ("reasoning", "perception", "both"):
        hex_colour = re.search(rf"--{name}: #([0-9a-f]{{6}})", css).group(1)
        assert tuple(int(hex_colour[k : k + 2], 16) for k in (0, 2, 4)) in colours, name
