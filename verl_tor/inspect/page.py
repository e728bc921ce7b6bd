"""The token inspector's page: one self-contained HTML file from a run's ``tor_inspect.jsonl``.

The records are embedded once as JSON (``<script type="application/json" id="tor-data">``) and a small inline
script renders them into the DOM when the page opens: ``section.step[data-step]`` per step,
``article.sample[data-step][data-sample][data-correct]`` per sample (``data-sample`` is the record's ``index``)
and one ``span.tok[data-set][data-weight][data-i]`` per response token, in order, where ``data-weight`` is the
recorded weight written so that ``float()`` reads back the same number. Everything is inline (CSS, script,
SVG histograms; images are the records' data URLs): the file opens from disk with no server and no network.

The page opens on the latest step; ``#step=N`` (or ``#step=all``) in the address opens step ``N``, and
``#tok=STEP.SAMPLE.I`` opens token ``I`` of sample ``SAMPLE`` (its ``index``) of step ``STEP`` in the details
panel. Choosing a step or clicking a token sets the address, so a view can be linked to.
"""

from __future__ import annotations

import html
import json
import math
import os
from typing import Any

from verl_tor.inspect import INSPECT_FILE
from verl_tor.inspect.reader import Record, find_inspect_file, read_records

PAGE_FILE = "inspect.html"

_CSS = """
:root { --reasoning: #ffbf80; --perception: #8fd0f7; --both: #d3aef2; --none: transparent; --ink: #1d1d1f;
  --muted: #6b6b70; --line: #dcdce0; --uline: #3a3a40; --panel: 340px; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  background: #f5f5f7; }
header { padding: 10px 16px 6px; background: #fff; }
header h1 { font-size: 18px; margin: 0 0 2px; }
header .meta, .muted { color: var(--muted); font-size: 12px; }
header details { font-size: 12px; margin-top: 4px; }
header details code { white-space: normal; }
#controls { position: sticky; top: 0; z-index: 5; display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: center;
  padding: 8px 16px; background: #fff; border-bottom: 1px solid var(--line); box-shadow: 0 1px 3px #0001; }
#controls .group { display: flex; gap: 6px; align-items: center; }
#controls .label { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; }
#controls label { display: inline-flex; gap: 4px; align-items: center; cursor: pointer; }
button, select { font: inherit; }
.swatch { display: inline-block; width: 14px; height: 14px; border-radius: 3px; border: 1px solid #0003; }
.swatch.s-none { background: #fff; }
.wkey { display: inline-block; width: 22px; height: 9px; border-bottom: 0 solid var(--uline);
  margin: 0 8px 0 3px; vertical-align: middle; }
header, #controls, main { margin-right: var(--panel); }
main { padding: 8px 16px 40px; }
section.step > h2 { font-size: 16px; margin: 12px 0 6px; }
.run-note { font-weight: normal; color: var(--muted); font-size: 12px; margin-left: 8px; }
.stats { display: grid; grid-template-columns: minmax(220px, 1fr) repeat(2, minmax(250px, 1.2fr)) minmax(260px, 1.3fr);
  gap: 8px; margin-bottom: 10px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; min-width: 0; }
.card h3 { font-size: 12px; margin: 0 0 4px; color: var(--muted); text-transform: uppercase; }
.fracbar { display: flex; height: 14px; border-radius: 3px; overflow: hidden; border: 1px solid #0002;
  margin: 4px 0 6px; background: #fff; }
.fracbar span { display: block; height: 100%; }
table.kv { border-collapse: collapse; font-size: 12px; }
table.kv td { padding: 0 8px 0 0; }
table.kv td:last-child { text-align: right; font-variant-numeric: tabular-nums; }
svg.hist { width: 100%; height: auto; display: block; }
svg.hist rect.bar { fill: #b8b8c0; }
svg.hist text { font-size: 10px; fill: var(--muted); }
svg.hist line.axis { stroke: #888; }
svg.hist line.threshold { stroke: #c0392b; stroke-width: 1.5; stroke-dasharray: 4 2; }
svg.hist text.threshold { fill: #c0392b; }
.tops { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; font-size: 12px; }
.tops ol { margin: 0; padding: 0; list-style: none; }
.tops li { display: flex; gap: 4px; align-items: center; margin: 1px 0; }
.tops li .bar { height: 6px; border-radius: 2px; background: #0003; }
.tops li .n { color: var(--muted); font-variant-numeric: tabular-nums; margin-left: auto; }
.chip { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: pre; border-radius: 3px; padding: 0 3px; }
.chip.s-none { background: #eee; }
article.sample { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin: 0 0 8px;
  padding: 8px 10px; content-visibility: auto; contain-intrinsic-size: auto 200px; }
article.sample[data-correct="true"] { border-left: 4px solid #2e9d57; }
article.sample[data-correct="false"] { border-left: 4px solid #c0392b; }
.sample-head { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; color: var(--muted); margin-bottom: 6px; }
.sample-head b { color: var(--ink); }
.verdict.ok { color: #2e9d57; font-weight: 600; }
.verdict.bad { color: #c0392b; font-weight: 600; }
.sample-body { display: flex; gap: 12px; align-items: flex-start; }
.images { flex: 0 0 auto; display: flex; flex-direction: column; gap: 4px; max-width: 170px; }
.images img { max-width: 160px; max-height: 160px; border: 1px solid var(--line); border-radius: 4px; cursor: zoom-in;
  image-rendering: auto; }
.images img.big { max-width: 480px; max-height: 480px; cursor: zoom-out; }
.images .noimg { width: 110px; padding: 18px 4px; text-align: center; font-size: 12px; color: var(--muted);
  border: 1px dashed var(--line); border-radius: 4px; }
.texts { flex: 1 1 auto; min-width: 0; }
.prompt { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px; color: #444; background: #f7f7f9;
  border-radius: 4px; padding: 4px 6px; max-height: 7.5em; overflow: auto; margin-bottom: 6px; }
.response { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; line-height: 2;
  white-space: pre-wrap; overflow-wrap: anywhere; }
.tok { border-bottom: 0 solid var(--uline); border-radius: 2px; cursor: pointer; padding: 1px 0;
  box-shadow: inset -1px 0 0 #fff; }  /* a hairline between neighbours of one set */
.tok.s-reasoning { background: var(--reasoning); }
.tok.s-perception { background: var(--perception); }
.tok.s-both { background: var(--both); }
.tok.ws { box-shadow: inset 0 0 0 1px #0002, inset -1px 0 0 #fff; }
.tok.invalid { color: #999; text-decoration: line-through; }
.tok:hover { outline: 1px solid var(--ink); }
.tok.selected { outline: 2px solid #c0392b; }
body.dim-reasoning .tok.s-reasoning, body.dim-perception .tok.s-perception, body.dim-both .tok.s-both,
body.dim-none .tok.s-none { background: transparent; color: #c4c4c8; border-bottom-color: #c4c4c8; }
body.only-correct article.sample[data-correct="false"], body.only-incorrect article.sample[data-correct="true"]
  { display: none; }
#details { position: fixed; right: 0; top: 0; bottom: 0; width: var(--panel); overflow: auto; background: #fff;
  border-left: 1px solid var(--line); padding: 14px; font-size: 13px; }
#details h2 { font-size: 14px; margin: 0 0 8px; }
#details dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 0; }
#details dt { color: var(--muted); }
#details dd { margin: 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
#details .hint { color: var(--muted); }
#tip { position: fixed; z-index: 10; pointer-events: none; background: #1d1d1fee; color: #fff; font-size: 12px;
  padding: 4px 7px; border-radius: 4px; white-space: pre; display: none; }
@media (max-width: 900px) { header, #controls, main { margin-right: 0; } #details { position: static; width: auto; padding-top: 14px; }
  .stats { grid-template-columns: 1fr; } }
"""

PAGE_HELPERS_JS = r"""
  const SVG_NS = "http://www.w3.org/2000/svg";  // a namespace name, never fetched
  // Non-finite floats arrive as strings ("NaN", "Infinity"): JSON has no literal for them.
  const num = (x) => (typeof x === "string" ? Number(x) : x);
  const missing = (x) => x === null || x === undefined;
  const shortTo = (digits) => (x) => {
    if (missing(x)) return "\u2013";
    x = num(x);
    if (!Number.isFinite(x)) return String(x);
    if (x !== 0 && (Math.abs(x) >= 1e4 || Math.abs(x) < 1e-3)) return x.toExponential(2);
    return String(Number(x.toPrecision(digits)));
  };
  function h(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (missing(v) || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "cls") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children || []) if (!missing(c)) e.append(c);
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (!missing(text)) e.textContent = text;
    return e;
  }
"""
"""JavaScript helpers shared by the inspector and audit pages (inside their function scope): DOM and number
formatting."""

_JS = (
    r"""
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("tor-data").textContent);
  const SETS = ["reasoning", "perception", "both", "none"];
  const SET_LABEL = { reasoning: "reasoning (T_r only)", perception: "perception (T_p only)",
    both: "both (T_r \u2229 T_p)", none: "neither" };
"""
    + PAGE_HELPERS_JS
    + r"""
  const short = shortTo(4);
  const isCorrect = (s) => (missing(s.acc) ? num(s.reward) > 0 : num(s.acc) >= 0.5);
  // Whitespace and control characters as visible symbols; in a response a newline keeps its line break.
  function visible(text, breaks) {
    if (text === "") return "\u2205";
    let out = "";
    for (const ch of text) {
      const c = ch.codePointAt(0);
      if (ch === "\n") out += breaks ? "\u21b5\n" : "\u21b5";
      else if (ch === "\t") out += "\u21e5";
      else if (c < 32) out += String.fromCodePoint(0x2400 + c);
      else if (c === 127) out += "\u2421";
      else out += ch;
    }
    return out;
  }

  const weights = new Set();
  for (const st of DATA.steps) for (const s of st.samples) for (const w of s.tokens.w) {
    if (Number.isFinite(num(w))) weights.add(Math.abs(num(w)));
  }
  const wMax = Math.max(0, ...weights);
  const underline = (w) => (0.75 + (2.25 * Math.abs(w)) / wMax).toFixed(2) + "px";

  // ---- header: runs and legend -------------------------------------------------------------------------
  const runOf = (step) => { const st = DATA.steps.find((x) => String(x.step) === String(step));
    return st && !missing(st.run_index) ? DATA.runs[st.run_index] : null; };
  const methodOf = (run) => ((run && run.tor && run.tor.method) || "tor");
  const lastRun = DATA.runs.length ? DATA.runs[DATA.runs.length - 1] : null;
  const methodBox = document.getElementById("method");
  methodBox.dataset.method = methodOf(lastRun);
  const labels = (lastRun && lastRun.labels) || {};
  methodBox.append(h("b", { text: "method: " + methodOf(lastRun) }));
  for (const key of ["reasoning", "perception", "use"]) {
    if (labels[key]) methodBox.append(" \u00b7 ", h("span", { "data-label": key, text: key + ": " + labels[key] }));
  }
  const nSamples = DATA.steps.reduce((n, st) => n + st.samples.length, 0);
  document.getElementById("meta").textContent = DATA.source + " \u00b7 " + DATA.steps.length + " steps, " +
    nSamples + " samples \u00b7 " + DATA.runs.length + " run header" + (DATA.runs.length === 1 ? "" : "s") +
    (DATA.runs.length > 1 ? " (resumed)" : "");
  const runsBox = document.getElementById("runs");
  DATA.runs.forEach((run, k) => {
    const cfg = Object.entries(run.tor || {}).map(([key, v]) => key + "=" + v).join(", ");
    const ins = Object.entries(run.inspect || {}).map(([key, v]) => key + "=" + v).join(", ");
    runsBox.append(h("div", {}, [h("b", { text: "run " + (k + 1) + ": " }),
      (run.experiment || "") + " started " + (run.started || "?") + " \u00b7 ", h("code", { text: "tor: " + cfg }),
      " \u00b7 ", h("code", { text: "inspect: " + ins })]));
  });

  const controls = document.getElementById("controls");
  const stepSelect = h("select", { id: "step-select", "aria-label": "step" });
  DATA.steps.forEach((st) => stepSelect.append(h("option", { value: String(st.step),
    text: "step " + st.step + " (" + st.samples.length + " samples)" })));
  stepSelect.append(h("option", { value: "all", text: "all steps" }));
  const prev = h("button", { type: "button", title: "previous step (\u2190)", text: "\u25c0" });
  const next = h("button", { type: "button", title: "next step (\u2192)", text: "\u25b6" });
  controls.append(h("div", { cls: "group" }, [h("span", { cls: "label", text: "Step" }), prev, stepSelect, next]));

  const setBoxes = h("div", { cls: "group" }, [h("span", { cls: "label", text: "Sets" })]);
  for (const name of SETS) {
    const box = h("input", { type: "checkbox", checked: "", "data-filter-set": name });
    box.addEventListener("change", () => document.body.classList.toggle("dim-" + name, !box.checked));
    setBoxes.append(h("label", { title: "unchecked: dimmed" }, [box, h("span", { cls: "swatch s-" + name,
      style: "background: var(--" + name + ")" }), SET_LABEL[name]]));
  }
  controls.append(setBoxes);

  const weightKey = h("div", { cls: "group", title: "underline thickness grows with the token's weight w" },
    [h("span", { cls: "label", text: "Weight" })]);
  // The weights that occur (γ_o, γ_p, γ_r in a plain run), else an even scale.
  const keys = weights.size <= 5 ? [...weights].sort((a, b) => a - b) : [0, wMax / 2, wMax];
  for (const w of keys) {
    const key = h("span", { cls: "wkey" });
    if (w > 0) key.style.borderBottomWidth = underline(w);
    weightKey.append(h("span", { text: "w=" + short(w) }), key);
  }
  controls.append(weightKey);

  const verdict = h("div", { cls: "group" }, [h("span", { cls: "label", text: "Samples" })]);
  for (const [value, label] of [["all", "all"], ["correct", "correct"], ["incorrect", "incorrect"]]) {
    const radio = h("input", { type: "radio", name: "verdict", value: value, checked: value === "all" ? "" : null });
    radio.addEventListener("change", () => {
      document.body.classList.toggle("only-correct", value === "correct");
      document.body.classList.toggle("only-incorrect", value === "incorrect");
    });
    verdict.append(h("label", {}, [radio, label]));
  }
  verdict.append(h("span", { cls: "muted", text: "(correct: acc \u2265 0.5; reward > 0 where acc is null)" }));
  controls.append(verdict);

  // ---- steps ---------------------------------------------------------------------------------------------
  const main = document.getElementById("steps");
  const sections = new Map();
  const samplesByKey = new Map();

  function histogram(hist, threshold, setName, title) {
    const card = h("div", { cls: "card" }, [h("h3", { text: title })]);
    if (!hist || !hist.counts || hist.counts.length === 0) { card.append(h("div", { cls: "muted", text: "no data" })); return card; }
    const edges = hist.edges.map(num), counts = hist.counts.map(num);
    const W = 320, H = 120, L = 8, R = 8, T = 14, B = 16;
    const lo = edges[0], hi = edges[edges.length - 1], span = hi - lo || 1;
    const X = (v) => L + ((W - L - R) * (Math.min(Math.max(v, lo), hi) - lo)) / span;
    const maxLog = Math.log10(1 + Math.max(...counts)) || 1;
    const Y = (c) => H - B - ((H - B - T) * Math.log10(1 + c)) / maxLog;
    const thr = num(threshold);
    const chart = svg("svg", { class: "hist", viewBox: "0 0 " + W + " " + H, role: "img" });
    counts.forEach((c, i) => {
      const bar = svg("rect", { class: "bar", x: X(edges[i]), y: Y(c), width: Math.max(0.5, X(edges[i + 1]) - X(edges[i]) - 0.5),
        height: H - B - Y(c) });
      if (thr > 0 && edges[i + 1] > thr) bar.style.fill = "var(--" + setName + ")";
      bar.append(svg("title", {}, "[" + short(edges[i]) + ", " + short(edges[i + 1]) + "): " + c + " tokens"));
      chart.append(bar);
    });
    chart.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    chart.append(svg("text", { x: L, y: H - 3 }, short(lo)));
    chart.append(svg("text", { x: W - R, y: H - 3, "text-anchor": "end" }, short(hi)));
    chart.append(svg("text", { x: L, y: 10 }, "max " + Math.max(...counts) + " tokens/bin (log scale)"));
    if (thr > 0) {
      const x = X(thr);
      chart.append(svg("line", { class: "threshold", x1: x, x2: x, y1: T - 4, y2: H - B }));
      chart.append(svg("text", { class: "threshold", x: Math.min(x + 3, W - R), y: T + 8,
        "text-anchor": x > W * 0.7 ? "end" : "start" }, "\u2265 " + short(thr)));
    }
    card.append(chart, h("div", { cls: "muted", text: thr > 0 ? "selected: score \u2265 " + short(thr) + " (dashed)" : "no token selected" }));
    return card;
  }

  function topTokens(tops) {
    const card = h("div", { cls: "card" }, [h("h3", { text: "Most often selected tokens (whole batch)" })]);
    const grid = h("div", { cls: "tops" });
    for (const name of ["reasoning", "perception"]) {
      const list = (tops && tops[name]) || [];
      const most = Math.max(1, ...list.map((e) => num(e[1])));
      const ol = h("ol", { "data-top": name });
      for (const [text, count] of list) {
        ol.append(h("li", {}, [h("span", { cls: "chip tok-text s-" + name, style: "background: var(--" + name + ")", text: visible(text) }),
          h("span", { cls: "bar", style: "width:" + (40 * num(count)) / most + "px" }), h("span", { cls: "n", text: String(count) })]));
      }
      if (list.length === 0) ol.append(h("li", { cls: "muted", text: "none" }));
      grid.append(h("div", {}, [h("div", { cls: "muted", text: name === "reasoning" ? "as reasoning (T_r)" : "as perception (T_p)" }), ol]));
    }
    card.append(grid);
    return card;
  }

  function fractionsCard(st) {
    const f = st.fractions || {}, r = num(f.reasoning) || 0, p = num(f.perception) || 0, o = num(f.overlap) || 0;
    const parts = { reasoning: r - o, both: o, perception: p - o, none: 1 - r - p + o };
    const bar = h("div", { cls: "fracbar", title: "share of the batch's valid tokens per set" });
    for (const name of ["reasoning", "both", "perception"]) {
      bar.append(h("span", { style: "width:" + Math.max(0, 100 * parts[name]) + "%; background: var(--" + name + ")" }));
    }
    const rows = [["valid tokens", st.n_valid_tokens], ["samples in batch", st.n_samples],
      ["T_r (reasoning)", short(r)], ["T_p (perception)", short(p)], ["overlap", short(o)],
      ["neither", short(parts.none)], ["H threshold", short((st.thresholds || {}).reasoning)],
      ["S threshold", short((st.thresholds || {}).perception)]];
    const table = h("table", { cls: "kv" });
    for (const [k, v] of rows) table.append(h("tr", {}, [h("td", { text: k }), h("td", { text: String(v) })]));
    return h("div", { cls: "card" }, [h("h3", { text: "Set fractions (whole batch)" }), bar, table]);
  }

  function tokensBox(sample) {
    const t = sample.tokens, box = h("div", { cls: "response" }), frag = document.createDocumentFragment();
    for (let i = 0; i < t.text.length; i++) {
      const w = num(t.w[i]), span = document.createElement("span");
      let cls = "tok s-" + t.set[i];
      if (t.valid && t.valid[i] === false) cls += " invalid";
      if (/^[ \u00a0]+$/.test(t.text[i])) cls += " ws";
      span.className = cls;
      span.dataset.set = t.set[i];
      span.dataset.weight = String(w);
      span.dataset.i = String(i);
      if (w !== 0 && Number.isFinite(w)) span.style.borderBottomWidth = underline(w);
      span.textContent = visible(t.text[i], true);
      frag.append(span);
    }
    box.append(frag);
    return box;
  }

  function sampleBox(st, s) {
    const ok = isCorrect(s), counts = { reasoning: 0, perception: 0, both: 0, none: 0 };
    for (const name of s.tokens.set) counts[name] = (counts[name] || 0) + 1;
    const head = h("div", { cls: "sample-head" }, [h("b", { text: "#" + s.index }),
      h("span", { text: s.data_source || "" }), h("span", { text: "uid " + (s.uid || "") }),
      h("span", { text: "reward " + short(s.reward) }), h("span", { text: "acc " + short(s.acc) }),
      h("span", { cls: "verdict " + (ok ? "ok" : "bad"), text: ok ? "\u2713 correct" : "\u2717 incorrect" }),
      h("span", { text: s.tokens.text.length + " tokens: " + SETS.map((n) => counts[n] + " " + n).join(", ") })]);
    const images = h("div", { cls: "images" });
    const urls = (s.images || []).filter((u) => typeof u === "string" && u.startsWith("data:image/"));
    for (const url of urls) {
      const img = h("img", { src: url, alt: "input image", title: "click to enlarge" });
      img.addEventListener("click", () => img.classList.toggle("big"));
      images.append(img);
    }
    if (urls.length === 0) images.append(h("div", { cls: "noimg", text: s.has_image ? "image not recorded" : "text only (no image)" }));
    const texts = h("div", { cls: "texts" }, [h("div", { cls: "prompt", title: "prompt", text: s.prompt || "" }), tokensBox(s)]);
    return h("article", { cls: "sample", "data-step": String(st.step), "data-sample": String(s.index),
      "data-correct": String(ok) }, [head, h("div", { cls: "sample-body" }, [images, texts])]);
  }

  for (const st of DATA.steps) {
    const run = missing(st.run_index) ? null : DATA.runs[st.run_index];
    const nOk = st.samples.filter(isCorrect).length;
    const title = h("h2", { text: "Step " + st.step }, [h("span", { cls: "run-note", text: st.samples.length +
      (st.samples.length === 1 ? " sample" : " samples") + " shown, " +
      nOk + " correct" + (run && DATA.runs.length > 1 ? " \u00b7 run " + (st.run_index + 1) + " (started " + run.started + ")" : "") })]);
    const hists = st.histograms || {}, thr = st.thresholds || {};
    const stats = h("div", { cls: "stats" }, [fractionsCard(st),
      histogram(hists.entropy, thr.reasoning, "reasoning", "Reasoning score H" +
        (run && run.labels && run.labels.reasoning ? " (" + run.labels.reasoning + ")" : " (top-p entropy)")),
      histogram(hists.sensitivity, thr.perception, "perception", "Perception score S" +
        (run && run.labels && run.labels.perception ? " (" + run.labels.perception + ")" : " (visual sensitivity)")),
      topTokens(st.top_tokens)]);
    const section = h("section", { cls: "step", id: "step-" + st.step, "data-step": String(st.step),
      "data-method": methodOf(run) }, [title, stats]);
    for (const s of st.samples) {
      section.append(sampleBox(st, s));
      samplesByKey.set(st.step + ":" + s.index, s);
    }
    sections.set(String(st.step), section);
    main.append(section);
  }
  if (DATA.steps.length === 0) main.append(h("p", { text: "No step recorded yet." }));

  function showStep(value) {
    stepSelect.value = value;
    for (const [key, section] of sections) section.hidden = value !== "all" && key !== value;
  }
  function moveStep(delta) {
    const i = stepSelect.selectedIndex, n = DATA.steps.length;
    if (n === 0) return;
    const j = i >= n ? (delta > 0 ? 0 : n - 1) : Math.min(n - 1, Math.max(0, i + delta));
    showStep(stepSelect.options[j].value);
    history.replaceState(null, "", "#step=" + stepSelect.value);
  }
  stepSelect.addEventListener("change", () => { showStep(stepSelect.value); history.replaceState(null, "", "#step=" + stepSelect.value); });
  prev.addEventListener("click", () => moveStep(-1));
  next.addEventListener("click", () => moveStep(1));
  document.addEventListener("keydown", (e) => {
    if (e.target.closest && e.target.closest("select, input, textarea")) return;
    if (e.key === "ArrowLeft") moveStep(-1);
    if (e.key === "ArrowRight") moveStep(1);
  });

  // ---- token details: tooltip on hover, panel on click ---------------------------------------------------
  const tip = document.getElementById("tip"), panel = document.getElementById("details");
  function tokenOf(span) {
    const box = span.closest("article.sample");
    const s = samplesByKey.get(box.dataset.step + ":" + box.dataset.sample);
    return { step: box.dataset.step, s: s, i: Number(span.dataset.i) };
  }
  function field(s, name, i) { return s.tokens[name] ? s.tokens[name][i] : undefined; }
  // Version 1 files recorded A·w as adv_w; version 2 records the advantage the loss reads as adv_loss.
  function lossAdvantage(s, i) { return s.tokens.adv_loss ? s.tokens.adv_loss[i] : field(s, "adv_w", i); }

  main.addEventListener("mouseover", (e) => {
    const span = e.target.closest(".tok");
    if (!span) return;
    const { s, i } = tokenOf(span);
    tip.textContent = JSON.stringify(s.tokens.text[i]) + "  " + s.tokens.set[i] + "\nH " + short(field(s, "H", i)) +
      "   S " + short(field(s, "S", i)) + "   w " + short(field(s, "w", i)) + "\nadvantage " + short(field(s, "adv", i)) +
      " \u2192 in loss " + short(lossAdvantage(s, i)) + (s.tokens.rho ? "   \u03c1 " + short(field(s, "rho", i)) : "") +
      "\nclick for details";
    tip.style.display = "block";
  });
  main.addEventListener("mousemove", (e) => {
    if (tip.style.display !== "block") return;
    tip.style.left = Math.min(e.clientX + 14, window.innerWidth - tip.offsetWidth - 4) + "px";
    tip.style.top = Math.min(e.clientY + 16, window.innerHeight - tip.offsetHeight - 4) + "px";
  });
  main.addEventListener("mouseout", (e) => { if (e.target.closest(".tok")) tip.style.display = "none"; });

  function showDetails(step, s, i, span) {
    const st = DATA.steps.find((x) => String(x.step) === String(step)), thr = st.thresholds || {};
    const exact = (x) => (missing(x) ? "\u2013" : String(num(x)));
    const rows = [
      ["text", "text", JSON.stringify(s.tokens.text[i])], ["id", "id", exact(field(s, "id", i))],
      ["position", "i", String(i)], ["set", "set", s.tokens.set[i]],
      ["valid", "valid", String(field(s, "valid", i) !== false)],
      ["H (top-p entropy)", "H", exact(field(s, "H", i))], ["step's H threshold", "H_threshold", exact(thr.reasoning)],
      ["S (visual sensitivity)", "S", exact(field(s, "S", i))], ["step's S threshold", "S_threshold", exact(thr.perception)],
      ["w (method's weight)", "w", exact(field(s, "w", i))], ["advantage (veRL)", "adv", exact(field(s, "adv", i))],
      ["advantage in the loss", "adv_loss", exact(lossAdvantage(s, i))],
      ["\u03c1 (veRL rollout correction)", "rho", s.tokens.rho ? exact(field(s, "rho", i)) : "off"],
      ["w enters the loss via", "weight_target", (runOf(step) || {}).weight_target || "advantages"]];
    const dl = h("dl");
    for (const [label, name, value] of rows) dl.append(h("dt", { text: label }), h("dd", { "data-field": name, text: value }));
    panel.replaceChildren(h("h2", {}, ["Token ", h("span", { cls: "chip s-" + s.tokens.set[i],
      style: "background: var(--" + s.tokens.set[i] + ")", text: visible(s.tokens.text[i]) })]),
      h("div", { cls: "muted", text: "step " + step + " \u00b7 sample #" + s.index + " \u00b7 " + (s.uid || "") }), dl);
    panel.dataset.step = String(step); panel.dataset.sample = String(s.index); panel.dataset.i = String(i);
    for (const old of document.querySelectorAll(".tok.selected")) old.classList.remove("selected");
    span.classList.add("selected");
  }
  main.addEventListener("click", (e) => {
    const span = e.target.closest(".tok");
    if (!span) return;
    const { step, s, i } = tokenOf(span);
    showDetails(step, s, i, span);
    history.replaceState(null, "", "#tok=" + step + "." + s.index + "." + i);
  });

  // ---- initial state from the address: #tok=STEP.SAMPLE.I or #step=N (default: the latest step) ----------
  const tokMatch = /^#tok=(-?\d+)\.(-?\d+)\.(\d+)$/.exec(location.hash);
  const stepMatch = /^#step=(all|-?\d+)$/.exec(location.hash);
  const latest = DATA.steps.length ? String(DATA.steps[DATA.steps.length - 1].step) : "all";
  if (tokMatch && samplesByKey.has(tokMatch[1] + ":" + tokMatch[2])) {
    showStep(tokMatch[1]);
    const span = document.querySelector('article.sample[data-step="' + tokMatch[1] + '"][data-sample="' + tokMatch[2] +
      '"] .tok[data-i="' + tokMatch[3] + '"]');
    if (span) { showDetails(tokMatch[1], samplesByKey.get(tokMatch[1] + ":" + tokMatch[2]), Number(tokMatch[3]), span);
      span.scrollIntoView({ block: "center" }); }
  } else showStep(stepMatch && (stepMatch[1] === "all" || sections.has(stepMatch[1])) ? stepMatch[1] : latest);
})();
"""
)


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as the strings JavaScript's ``Number()`` reads (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def render_page(runs: list[Record], steps: list[Record], source: str) -> str:
    """The HTML page of ``read_records``' ``(runs, steps)``; ``source`` names the file they came from."""
    experiment = next((run["experiment"] for run in reversed(runs) if run.get("experiment")), "")
    method = (runs[-1].get("tor") or {}).get("method", "tor") if runs else "tor"
    title = f"Token inspector ({method})" + (f": {experiment}" if experiment else "")
    data = json.dumps(_json_safe({"source": source, "runs": runs, "steps": steps}), allow_nan=False)
    # Inside <script>, "</script>" or "<!--" in a token or prompt would end or change the block; \u003c is the
    # same character to JSON.parse.
    data = data.replace("<", "\\u003c")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<header data-method="{html.escape(method)}"><h1>{html.escape(title)}</h1><div class="meta" id="meta"></div>'
        '<div class="meta" id="method"></div>'
        '<details><summary>run headers</summary><div id="runs"></div></details></header>\n'
        '<nav id="controls"></nav>\n<main id="steps"><noscript>This page renders its records with JavaScript.</noscript>'
        "</main>\n"
        '<aside id="details"><h2>Token details</h2><p class="hint">Hover a token for its scores; click it for '
        "everything recorded about it. Colours: the token's set; underline: its weight.</p></aside>\n"
        '<div id="tip"></div>\n'
        f'<script type="application/json" id="tor-data">{data}</script>\n<script>{_JS}</script>\n</body>\n</html>\n'
    )


def write_page(
    run_dir: str, out: str | None = None, steps: list[int] | None = None, samples_per_step: int | None = None
) -> str:
    """Writes the page of ``run_dir``'s inspector file to ``out`` (default ``run_dir/inspect.html``); its path.

    ``steps`` keeps only those steps, ``samples_per_step`` the first N recorded samples of each (a smaller page of a
    long run). The page names its file relative to the run's parent folder, never by an absolute path.

    Raises ``FileNotFoundError`` when the run has no ``tor_inspect.jsonl`` (see ``find_inspect_file``).
    """
    path = find_inspect_file(run_dir)
    if path is None:
        raise FileNotFoundError(f"no {INSPECT_FILE} in {run_dir} or {os.path.join(run_dir, 'checkpoints')}")
    runs, records = read_records(path)
    if steps is not None:
        records = [record for record in records if record["step"] in set(steps)]
    if samples_per_step is not None:
        records = [{**record, "samples": record.get("samples", [])[:samples_per_step]} for record in records]
    out = out or os.path.join(run_dir, PAGE_FILE)
    source = os.path.relpath(path, os.path.dirname(os.path.abspath(run_dir.rstrip(os.sep))))
    with open(out, "w", encoding="utf-8") as f:
        f.write(render_page(runs, records, source=source))
    return out
