"""audit.html in headless Chromium: the DOM its script builds against the audit.json it embeds.

The record is made by :func:`verl_tor.audit.report.build_audit` from hand-made results of three methods (ToR's two
sets, a one-set method with a name of its own, a method without sets), on tokens that would break a careless page
(``</script>``, ``<!--``, markup, a newline, an empty token), a padding row, an invalid token, samples with and without
a picture, correct and incorrect ones, and the demo task's ground truth.
"""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import pytest
import torch
from browser_dom import chromium, needs_chromium, same_float, shown
from PIL import Image

from verl_tor.audit.methods import AuditMethod, MethodResult
from verl_tor.audit.page import render_page
from verl_tor.audit.report import AuditSample, build_audit, json_ready
from verl_tor.demo.task import DATA_SOURCE
from verl_tor.methods.config import TokenCreditConfig

TEXTS = [
    ["red", " 1", " 3", "<|im_end|>"],
    ["</script>", "<!--", "\n", "", " <b>x</b>"],
    ["blue", " 3", " 2"],
]


def png(colour: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def rows(*values, dtype=torch.float32) -> list[torch.Tensor]:
    """Per batch row (row 1 is padding, the samples are rows 0, 2, 3)."""
    return [torch.tensor(v, dtype=dtype) for v in values]


@pytest.fixture(scope="module")
def audit() -> dict:
    samples = [
        AuditSample(0, "u0", DATA_SOURCE, "<|image_pad|>×4 prompt", 1.0, 1.0, True, [1, 2, 3, 4], TEXTS[0], [True] * 4),
        AuditSample(
            2, "u1", DATA_SOURCE, "no picture", 0.0, None, False, [5, 6, 7, 8, 9], TEXTS[1], [True] * 4 + [False]
        ),
        AuditSample(3, "u0", DATA_SOURCE, "<|image_pad|>×4 prompt", 0.0, 0.0, True, [10, 3, 11], TEXTS[2], [True] * 3),
    ]
    tor = MethodResult(
        scores={
            "reasoning": rows([0.1, 0.9, 0.8, 0], [1, 1], [0.5, 0.2, 0.7, 0.3, 0], [0.2, 0.1, 0.9]),
            "perception": rows([2.0, 0.1, 0, 0], [1, 1], [0, 0, 0, 0, 0], [1.5, 0.3, 0]),
        },
        sets={
            "reasoning": rows([0, 1, 1, 0], [0, 0], [1, 0, 1, 0, 0], [0, 0, 1], dtype=torch.bool),
            "perception": rows([1, 1, 0, 0], [0, 0], [0, 0, 0, 0, 0], [1, 0, 0], dtype=torch.bool),
        },
        weights=rows([0.5, 1, 1, 0], [0, 0], [1, 0, 1, 0, 0], [0.5, 0, 1]),
        thresholds={"reasoning": 0.7, "perception": 1.5},
        counterfactual="remove_image",
        config={"perception_weight": 0.5},
    )
    soft = MethodResult(
        scores={"visual": rows([3.0, 0.2, 0.1, 0], [0, 0], [0, 0, 0, 0, 0], [2.5, 0.4, 0.1])},
        sets={"visual": rows([1, 0, 0, 0], [0, 0], [0, 0, 0, 0, 0], [1, 1, 0], dtype=torch.bool)},
        weights=rows([1.7, 0.6, 0.4, 0.1 + 0.2], [0, 0], [1, 1, 1, 1, 0], [1.5, 1.2, 0.3]),
        thresholds={"visual": 0.4},
        counterfactual="remove_image",
        config={},
    )
    plain = MethodResult({}, {}, rows([1, 1, 1, 1], [0, 0], [1, 1, 1, 1, 0], [1, 1, 1]), {}, None, {})
    methods = [
        AuditMethod("tor", "ToR", TokenCreditConfig.from_mapping({"method": "tor"})),
        AuditMethod("soft", "a soft method", TokenCreditConfig.from_mapping({"method": "pgpo"})),
        AuditMethod("grpo", "GRPO", TokenCreditConfig.from_mapping({"method": "grpo"})),
    ]
    passes = {
        "old_log_prob": {"time_s": 2.0, "device_peak_gb": None, "rss_peak_increase_gb": 0.1},
        "remove_image": {"time_s": 0.5, "device_peak_gb": None, "rss_peak_increase_gb": 0.0},
    }
    record = build_audit(
        samples,
        methods,
        {"tor": tor, "soft": soft, "grpo": plain},
        passes,
        {"model": "m", "data": "d", "prompts": 2, "n": 2, "rollout": "hf", "temperature": 1.0, "top_p": 1.0},
        {"u0": [png("red")]},
    )
    return json_ready(record)


class AuditDom(HTMLParser):
    """What the tests read from the dumped DOM: samples with their columns of per-method tokens, matrices, cards."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.samples: dict[str, dict] = {}
        self.matrices: dict[str, dict[tuple[str, str], str]] = {}
        self.cards: dict[str, dict[str, str]] = {}
        self.passes: list[str] = []
        self._sample = self._col = self._matrix = self._card = None
        self._capture = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "article" and "sample" in classes:
            self._sample = {"attrs": attrs, "cols": [], "images": 0}
            self.samples[attrs["data-sample"]] = self._sample
        elif tag == "img" and self._sample is not None:
            self._sample["images"] += 1
        elif tag == "div" and "col" in classes and "labels" not in classes and self._sample is not None:
            self._col = {"i": attrs["data-i"], "image": attrs.get("data-image"), "toks": []}
            self._sample["cols"].append(self._col)
        elif tag == "span" and "tok" in classes:
            self._capture, self._text = ("tok", attrs), ""
        elif tag == "table" and "matrix" in classes:
            self._matrix = self.matrices.setdefault(attrs["data-kind"], {})
        elif tag == "td" and self._matrix is not None and "data-row" in attrs:
            self._matrix[(attrs["data-row"], attrs["data-col"])] = attrs["data-value"]
        elif tag == "section" and "method" in classes:
            self._card = self.cards.setdefault(attrs["data-method"], {})
        elif tag == "td" and self._card is not None and "data-field" in attrs:
            self._capture, self._text = ("field", attrs), ""
        elif tag == "tr" and "pass" in classes:
            self.passes.append(attrs["data-pass"])

    def handle_data(self, data):
        if self._capture:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "article":
            self._sample = None
        elif tag == "table":
            self._matrix = None
        elif tag == "section":
            self._card = None
        elif self._capture and tag in ("span", "td"):
            kind, attrs = self._capture
            if kind == "tok":
                self._col["toks"].append((attrs["data-method"], attrs["data-set"], attrs["data-weight"], self._text))
            else:
                self._card[attrs["data-field"]] = self._text
            self._capture = None


def test_page_embeds_the_record_once_and_tokens_cannot_end_the_script(audit):
    page = render_page(audit)
    assert page.count("</script>") == 2 and "<!--" not in page
    match = re.search(r'<script type="application/json" id="audit-data">(.*?)</script>', page, re.S)
    assert json.loads(match.group(1)) == audit
    assert not re.search(r"<link\b|@import|<script[^>]*\bsrc=", page)
    assert re.findall(r"https?://[^\s\"')]+", page) == ["http://www.w3.org/2000/svg"]


@needs_chromium
def test_browser_shows_every_token_once_per_method_aligned_in_columns(audit, tmp_path):
    page = tmp_path / "audit.html"
    page.write_text(render_page(audit), encoding="utf-8")
    dom = AuditDom()
    dom.feed(chromium(f"file://{page}", tmp_path, "--dump-dom"))
    methods = list(audit["methods"])
    assert sorted(dom.samples) == sorted(str(s["index"]) for s in audit["samples"])  # each sample once
    for record in audit["samples"]:
        shown_sample = dom.samples[str(record["index"])]
        assert shown_sample["attrs"]["data-correct"] == str(record["correct"]).lower()
        assert shown_sample["images"] == len(audit["images"].get(record["uid"], []))
        tokens = record["tokens"]
        assert [col["i"] for col in shown_sample["cols"]] == [str(i) for i in range(len(tokens["text"]))]
        for i, col in enumerate(shown_sample["cols"]):
            # One span per method, in the methods' order, with the same text: a column is one token's fate.
            assert [m for m, *_ in col["toks"]] == methods
            assert {text for *_, text in col["toks"]} == {shown(tokens["text"][i], breaks=False)}
            for method, token_set, weight, _ in col["toks"]:
                assert token_set == record["methods"][method]["set"][i]
                assert same_float(float(weight), record["methods"][method]["w"][i])
            assert col["image"] == str(tokens["image"][i]).lower()
    for kind, block in (("jaccard", "overlap"), ("share", "overlap"), ("spearman", "correlation")):
        labels = audit[block]["labels"]
        for a, row in zip(labels, audit[block][kind], strict=True):
            for b, value in zip(labels, row, strict=True):
                shown_value = dom.matrices[kind][(a, b)]
                assert shown_value == "null" if value is None else float(shown_value) == value
    assert audit["overlap"]["labels"] == ["tor/reasoning", "tor/perception", "soft/visual"]
    assert float(dom.cards["tor"]["perception/precision"]) == pytest.approx(
        audit["methods"]["tor"]["ground_truth"]["perception"]["precision"], rel=1e-2
    )
    assert float(dom.cards["soft"]["visual/recall"]) == pytest.approx(
        audit["methods"]["soft"]["ground_truth"]["visual"]["recall"], rel=1e-2
    )
    assert dom.passes == ["old_log_prob", "remove_image"]


@needs_chromium
def test_browser_screenshot_shows_the_sets_colours(audit, tmp_path):
    page = tmp_path / "audit.html"
    page.write_text(render_page(audit), encoding="utf-8")
    png_path = tmp_path / "audit.png"
    chromium(f"file://{page}", tmp_path, f"--screenshot={png_path}", "--window-size=1200,1400", "--hide-scrollbars")
    image = Image.open(png_path).convert("RGB")
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 20)}
    # Drawn only by the page's script: ToR's set colours (its CSS) and the first palette colour (the "visual" set).
    css = render_page(audit)
    for name in ("reasoning", "perception", "both"):
        hex_colour = re.search(rf"--{name}: #([0-9a-f]{{6}})", css).group(1)
        assert tuple(int(hex_colour[k : k + 2], 16) for k in (0, 2, 4)) in colours, name
    assert (0xA8, 0xE6, 0xA1) in colours
