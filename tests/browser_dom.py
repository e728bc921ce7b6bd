"""Headless Chromium for the page tests: open a page from disk, read the DOM its script built.

Debian's ``chromium`` package (``apt-get install -y chromium``; ``.ci/run`` installs it); tests that need it are
skipped with that instruction where it is absent.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not found: install Debian's package with `apt-get install -y chromium`"
)


def chromium(url: str, tmp_path, *args: str) -> str:
    """Runs headless Chromium on ``url`` with a fresh profile and no network use of its own; its stdout."""
    profile = tmp_path / f"profile-{len(os.listdir(tmp_path))}"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    flags += ["--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"]
    done = subprocess.run([CHROMIUM, *flags, *args, url], capture_output=True, text=True, timeout=180, check=True)
    return done.stdout


class DumpedDom(HTMLParser):
    """What the tests read from the DOM Chromium dumps: containers, token spans, histograms, top tokens, panel."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[str] = []
        self.samples: dict[tuple[str, str], dict] = {}  # (data-step, data-sample) -> attributes and tokens
        self.histograms: dict[str, list[dict]] = {}  # data-step -> [{"bars": n, "threshold": bool}] in order
        self.top_tokens: dict[tuple[str, str], list[str]] = {}  # (data-step, set) -> shown texts in order
        self.details: dict[str, str] = {}  # data-field -> text of the details panel
        self.details_attrs: dict[str, str] = {}
        self.header_attrs: dict[str, str] = {}
        self.method_text = ""  # the header's method line
        self.section_methods: dict[str, str] = {}  # data-step -> data-method
        self._step = self._sample = self._capture = None
        self._top: list[str] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "section" and "step" in classes:
            self._step = attrs["data-step"]
            self.sections.append(self._step)
            self.histograms[self._step] = []
            self.section_methods[self._step] = attrs.get("data-method")
        elif tag == "header":
            self.header_attrs = attrs
        elif tag == "div" and attrs.get("id") == "method":
            self._capture, self._text = ("method", attrs), ""
        elif tag == "article" and "sample" in classes:
            assert attrs["data-step"] == self._step, "a sample outside its step's section"
            self._sample = {"attrs": attrs, "tokens": []}
            self.samples[(attrs["data-step"], attrs["data-sample"])] = self._sample
        elif tag == "span" and "tok" in classes:
            self._capture, self._text = ("token", attrs), ""
        elif tag == "svg" and "hist" in classes:
            self.histograms[self._step].append({"bars": 0, "threshold": False})
        elif tag == "rect" and "bar" in classes:
            self.histograms[self._step][-1]["bars"] += 1
        elif tag == "line" and "threshold" in classes:
            self.histograms[self._step][-1]["threshold"] = True
        elif tag == "ol" and "data-top" in attrs:
            self._top = self.top_tokens.setdefault((self._step, attrs["data-top"]), [])
        elif tag == "span" and "tok-text" in classes:
            self._capture, self._text = ("top", attrs), ""
        elif tag == "aside" and attrs.get("id") == "details":
            self.details_attrs = attrs
        elif tag == "dd" and "data-field" in attrs:
            self._capture, self._text = ("detail", attrs), ""

    def handle_data(self, data: str) -> None:
        if self._capture:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if self._capture and self._capture[0] == "method":
            if tag == "div":
                self.method_text, self._capture = self._text, None
            return
        if tag == "article":
            self._sample = None
        elif tag == "section":
            self._step = None
        elif self._capture and tag in ("span", "dd"):
            kind, attrs = self._capture
            if kind == "token":
                self._sample["tokens"].append((self._text, attrs["data-set"], attrs["data-weight"], attrs["data-i"]))
            elif kind == "top":
                self._top.append(self._text)
            else:
                self.details[attrs["data-field"]] = self._text
            self._capture = None


def dump_dom(url: str, tmp_path) -> DumpedDom:
    dom = DumpedDom()
    dom.feed(chromium(url, tmp_path, "--dump-dom"))
    return dom


def shown(text: str, breaks: bool = True) -> str:
    """How the page shows a token: newline as ↵ (in a response followed by the line break), tab as ⇥, other
    control characters as their Unicode control pictures (U+2400 + code, DEL as ␡), empty as ∅."""
    if text == "":
        return "∅"
    pictures = {"\n": "↵\n" if breaks else "↵", "\t": "⇥", "\x7f": "␡"}
    return "".join(pictures.get(ch, chr(0x2400 + ord(ch)) if ord(ch) < 32 else ch) for ch in text)


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b
