"""``audit.html``: the token inspector extended to several methods, one self-contained page from ``audit.json``.

The record is embedded once as JSON (``<script type="application/json" id="audit-data">``); an inline script builds
the DOM when the page opens (no network, no server):

- one ``section.method[data-method]`` card per method: sets (fraction, threshold, most selected tokens), scores
  (mean, histogram), mean weight and, where the data has a ground truth, each set's precision and recall;
- ``table.matrix[data-kind]`` for ``jaccard``, ``share`` (row's set in column's set) and ``spearman``, cells
  ``td[data-row][data-col][data-value]``; ``tr.pass[data-pass]`` rows for the measured passes;
- one ``article.sample[data-sample][data-uid][data-correct]`` per sample, shown once with its pictures; its response
  as ``div.col[data-i]`` columns, one per token, each holding one ``span.tok[data-method][data-set][data-weight]`` per
  method in the methods' order: the eye runs down a column to see that token's fate under every method
  (colour = set, underline thickness = weight; a column whose token only the image decides is marked ``data-image``).

Filters: methods shown, sets highlighted, correct / incorrect samples. ``#methods``, ``#between``, ``#cost`` and
``#samples`` in the address open the page at that part.
"""

from __future__ import annotations

import html
import json
from typing import Any

from verl_tor.inspect.page import PAGE_HELPERS_JS, _json_safe

_CSS = """
:root { --reasoning: #ffbf80; --perception: #8fd0f7; --both: #d3aef2; --ink: #1d1d1f; --muted: #6b6b70;
  --line: #dcdce0; --uline: #3a3a40; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  background: #f5f5f7; }
header { padding: 10px 16px 6px; background: #fff; }
header h1 { font-size: 18px; margin: 0 0 2px; }
.muted, header .meta { color: var(--muted); font-size: 12px; }
#controls { position: sticky; top: 0; z-index: 5; display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: center;
  padding: 8px 16px; background: #fff; border-bottom: 1px solid var(--line); box-shadow: 0 1px 3px #0001; }
#controls .group { display: flex; gap: 8px; align-items: center; }
#controls .label { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; }
#controls label { display: inline-flex; gap: 4px; align-items: center; cursor: pointer; }
.swatch { display: inline-block; width: 14px; height: 14px; border-radius: 3px; border: 1px solid #0003; }
main { padding: 8px 16px 40px; }
h2 { font-size: 16px; margin: 14px 0 6px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 8px; align-items: start; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; min-width: 0; }
.card h3 { font-size: 13px; margin: 0 0 4px; }
.card .desc { color: var(--muted); font-size: 12px; margin-bottom: 6px; }
table.kv, table.matrix, table.passes { border-collapse: collapse; font-size: 12px; }
table.kv td, table.passes td, table.passes th { padding: 1px 8px 1px 0; text-align: left; }
table.kv td.n, table.passes td.n { text-align: right; font-variant-numeric: tabular-nums; }
table.matrix th { font-weight: 600; padding: 2px 6px; text-align: right; white-space: nowrap; }
table.matrix thead th { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; vertical-align: bottom; }
table.matrix td { width: 52px; height: 26px; text-align: center; font-variant-numeric: tabular-nums;
  border: 1px solid #fff; }
.matrices { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.matrices figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
.matrices figcaption { font-size: 12px; color: var(--muted); margin-bottom: 4px; max-width: 420px; }
svg.hist { width: 100%; height: auto; display: block; }
svg.hist rect { fill: #b8b8c0; }
svg.hist line { stroke: #c0392b; stroke-dasharray: 4 2; }
svg.hist text { font-size: 10px; fill: var(--muted); }
.chip { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: pre; border-radius: 3px; padding: 0 3px;
  background: #eee; margin: 0 2px 2px 0; display: inline-block; font-size: 12px; }
article.sample { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin: 0 0 8px;
  padding: 8px 10px; content-visibility: auto; contain-intrinsic-size: auto 240px; }
article.sample[data-correct="true"] { border-left: 4px solid #2e9d57; }
article.sample[data-correct="false"] { border-left: 4px solid #c0392b; }
.sample-head { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; color: var(--muted); margin-bottom: 6px; }
.sample-head b { color: var(--ink); }
.sample-body { display: flex; gap: 12px; align-items: flex-start; }
.images { flex: 0 0 auto; display: flex; flex-direction: column; gap: 4px; }
.images img { max-width: 120px; max-height: 120px; border: 1px solid var(--line); border-radius: 4px; }
.images .noimg { width: 90px; padding: 14px 4px; text-align: center; font-size: 12px; color: var(--muted);
  border: 1px dashed var(--line); border-radius: 4px; }
.texts { flex: 1 1 auto; min-width: 0; }
.prompt { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px; color: #444; background: #f7f7f9;
  border-radius: 4px; padding: 4px 6px; max-height: 5em; overflow: auto; margin-bottom: 6px; }
.rows-legend { font-size: 11px; color: var(--muted); margin-bottom: 4px; }
.response { display: flex; flex-wrap: wrap; row-gap: 8px; font-family: ui-monospace, Menlo, Consolas, monospace;
  font-size: 13px; }
.col { display: flex; flex-direction: column; border-top: 3px solid transparent; padding-top: 1px; }
.col[data-image="true"] { border-top-color: #2e9d57; }
.col:hover { background: #0000000d; }
.tok { white-space: pre; padding: 0 1px; line-height: 1.5; border-bottom: 0 solid var(--uline); cursor: pointer;
  box-shadow: inset -1px 0 0 #fff; }
.tok.invalid { color: #999; text-decoration: line-through; }
.col.selected { outline: 2px solid #c0392b; }
.col.labels { font: 11px/1.5 system-ui, sans-serif; color: var(--muted); padding-right: 6px; }
.row-label { line-height: 19.5px; text-align: right; }
#details { position: fixed; right: 8px; bottom: 8px; width: 360px; max-height: 50vh; overflow: auto; background: #fff;
  border: 1px solid var(--line); border-radius: 6px; padding: 10px; font-size: 12px; box-shadow: 0 2px 8px #0002; }
#details table { border-collapse: collapse; }
#details td, #details th { padding: 1px 6px 1px 0; text-align: left; font-variant-numeric: tabular-nums; }
"""

_JS = (
    r"""
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("audit-data").textContent);
  const METHODS = Object.keys(DATA.methods);
"""
    + PAGE_HELPERS_JS
    + r"""
  const short = shortTo(3);
  function visible(text) {
    if (text === "") return "\u2205";
    let out = "";
    for (const ch of text) {
      const c = ch.codePointAt(0);
      if (ch === "\n") out += "\u21b5"; else if (ch === "\t") out += "\u21e5";
      else if (c < 32) out += String.fromCodePoint(0x2400 + c); else if (c === 127) out += "\u2421"; else out += ch;
    }
    return out;
  }

  // ---- colours: the inspector's for ToR's sets, a palette for any other set name -------------------------------
  const COLOUR = { reasoning: "var(--reasoning)", perception: "var(--perception)", both: "var(--both)", none: "" };
  const PALETTE = ["#a8e6a1", "#f7a8b8", "#f5e08c", "#9fd8d0", "#c9b6e4", "#f2c6a0"];
  const SETS = ["none"];
  for (const s of DATA.samples) for (const m of METHODS) for (const label of s.methods[m].set)
    if (!SETS.includes(label)) SETS.push(label);
  SETS.filter((label) => !(label in COLOUR)).forEach((label, k) => { COLOUR[label] = PALETTE[k % PALETTE.length]; });
  let wMax = 0;
  for (const s of DATA.samples) for (const m of METHODS) for (const w of s.methods[m].w)
    if (Number.isFinite(num(w))) wMax = Math.max(wMax, Math.abs(num(w)));
  const underline = (w) => (num(w) === 0 || wMax === 0 ? "0px" : (0.75 + (2.25 * Math.abs(num(w))) / wMax).toFixed(2) + "px");

  // ---- header -------------------------------------------------------------------------------------------------
  const st = DATA.settings || {};
  document.getElementById("meta").textContent = [
    "model " + st.model, "data " + (Array.isArray(st.data) ? st.data.join(", ") : st.data),
    st.prompts + " prompts \u00d7 " + st.n + " responses (" + DATA.n_samples + " samples, " + DATA.n_valid_tokens +
      " valid tokens)", "rollout " + st.rollout + ", temperature " + st.temperature + ", top-p " + st.top_p,
  ].join(" \u00b7 ");

  // ---- controls -----------------------------------------------------------------------------------------------
  const dyn = document.getElementById("dynamic-style");
  const hiddenMethods = new Set(), dimmedSets = new Set();
  let show = "all";
  function restyle() {
    const rules = [];
    for (const m of hiddenMethods) rules.push('[data-method="' + m + '"] { display: none; }');
    for (const s of dimmedSets) rules.push('.tok[data-set="' + s + '"] { background: transparent !important; color: #c4c4c8; }');
    if (show !== "all") rules.push('article.sample[data-correct="' + (show === "correct" ? "false" : "true") + '"] { display: none; }');
    dyn.textContent = rules.join("\n");
  }
  const controls = document.getElementById("controls");
  const methodGroup = h("div", { cls: "group" }, [h("span", { cls: "label", text: "methods" })]);
  for (const m of METHODS) {
    const box = h("input", { type: "checkbox", "data-filter-method": m, checked: "checked" });
    box.addEventListener("change", () => { box.checked ? hiddenMethods.delete(m) : hiddenMethods.add(m); restyle(); });
    methodGroup.append(h("label", { title: DATA.methods[m].description }, [box, m]));
  }
  const setGroup = h("div", { cls: "group" }, [h("span", { cls: "label", text: "sets" })]);
  for (const s of SETS) {
    const box = h("input", { type: "checkbox", "data-filter-set": s, checked: "checked" });
    box.addEventListener("change", () => { box.checked ? dimmedSets.delete(s) : dimmedSets.add(s); restyle(); });
    setGroup.append(h("label", {}, [box, h("span", { cls: "swatch", style: "background:" + (COLOUR[s] || "#fff") }), s]));
  }
  const showGroup = h("div", { cls: "group" }, [h("span", { cls: "label", text: "samples" })]);
  for (const value of ["all", "correct", "incorrect"]) {
    const radio = h("input", { type: "radio", name: "show", value: value, "data-filter-correct": value, checked: value === "all" ? "checked" : null });
    radio.addEventListener("change", () => { show = value; restyle(); });
    showGroup.append(h("label", {}, [radio, value]));
  }
  controls.append(methodGroup, setGroup, showGroup,
    h("div", { cls: "group muted", text: "colour = set \u00b7 underline = weight (thickest " + short(wMax) + ")" +
      (DATA.ground_truth ? " \u00b7 green bar above a token: only the image decides it" : "") }));

  // ---- summary: one card per method ----------------------------------------------------------------------------
  const main = document.getElementById("main");
  function histogram(hist, threshold) {
    const counts = hist.counts.map(num), edges = hist.edges.map(num);
    const W = 280, H = 70, B = 14, most = Math.max(1, ...counts), top = edges[edges.length - 1] || 1;
    const chart = svg("svg", { class: "hist", viewBox: "0 0 " + W + " " + H });
    counts.forEach((c, k) => {
      const height = c ? ((H - B - 4) * Math.log1p(c)) / Math.log1p(most) : 0;
      chart.append(svg("rect", { x: (k * W) / counts.length, y: H - B - height, width: W / counts.length - 1, height: height }));
    });
    if (num(threshold) > 0) { const x = (W * num(threshold)) / top; chart.append(svg("line", { x1: x, x2: x, y1: 0, y2: H - B })); }
    chart.append(svg("text", { x: 0, y: H - 2 }, "0"), svg("text", { x: W, y: H - 2, "text-anchor": "end" }, short(top)));
    return chart;
  }
  const cards = h("div", { cls: "cards" });
  for (const m of METHODS) {
    const rec = DATA.methods[m];
    const card = h("section", { cls: "card method", "data-method": m }, [h("h3", { text: m }),
      h("div", { cls: "desc", text: rec.description })]);
    const kv = h("table", { cls: "kv" });
    const row = (name, value, field) => kv.append(h("tr", {}, [h("td", { text: name }), h("td", { cls: "n", text: short(value), "data-field": field })]));
    row("mean weight", rec.mean_weight, "mean_weight");
    if (rec.counterfactual) kv.append(h("tr", {}, [h("td", { text: "counterfactual" }), h("td", { cls: "n", text: rec.counterfactual })]));
    for (const [name, s] of Object.entries(rec.sets)) {
      row(name + ": fraction", s.fraction, name + "/fraction");
      row(name + ": threshold", s.threshold, name + "/threshold");
      if (rec.ground_truth) {
        row(name + ": precision (image tokens)", rec.ground_truth[name].precision, name + "/precision");
        row(name + ": recall (image tokens)", rec.ground_truth[name].recall, name + "/recall");
      }
    }
    card.append(kv);
    for (const [name, sc] of Object.entries(rec.scores)) {
      card.append(h("div", { cls: "muted", text: name + " score, mean " + short(sc.mean) + " (log-scale counts)" }),
        histogram(sc.histogram, (rec.sets[name] || {}).threshold));
    }
    for (const [name, s] of Object.entries(rec.sets)) {
      const tops = h("div", { "data-top": m + "/" + name }, [h("span", { cls: "muted", text: "most selected as " + name + ": " })]);
      for (const [text, count] of s.top_tokens.slice(0, 10)) tops.append(h("span", { cls: "chip", text: visible(text) + " \u00d7" + count }));
      card.append(tops);
    }
    if (!Object.keys(rec.sets).length) card.append(h("div", { cls: "muted", text: "selects no tokens (every weight as shown)" }));
    cards.append(card);
  }
  main.append(h("h2", { id: "methods", text: "Methods" }), cards);

  // ---- comparisons: overlap and correlation matrices ---------------------------------------------------------
  function matrix(kind, labels, values, caption) {
    const table = h("table", { cls: "matrix", "data-kind": kind });
    table.append(h("thead", {}, [h("tr", {}, [h("th"), ...labels.map((l) => h("th", { text: l }))])]));
    const body = h("tbody");
    labels.forEach((a, i) => {
      const tr = h("tr", {}, [h("th", { text: a })]);
      labels.forEach((b, j) => {
        const v = num(values[i][j]);
        const shade = Number.isFinite(v) ? Math.round(255 - 150 * Math.abs(v)) : 255;
        const bg = Number.isFinite(v) ? (v < 0 ? "rgb(255," + shade + "," + shade + ")" : "rgb(" + shade + "," + shade + ",255)") : "#f0f0f0";
        tr.append(h("td", { "data-row": a, "data-col": b, "data-value": missing(values[i][j]) ? "null" : String(values[i][j]),
          style: "background:" + bg, text: short(values[i][j]) }));
      });
      body.append(tr);
    });
    table.append(body);
    return h("figure", {}, [h("figcaption", { text: caption }), table]);
  }
  const ov = DATA.overlap, cor = DATA.correlation;
  const figures = h("div", { cls: "matrices" });
  if (ov.labels.length) {
    figures.append(matrix("jaccard", ov.labels, ov.jaccard, "Overlap of the selected sets: Jaccard |A \u2229 B| / |A \u222a B|"),
      matrix("share", ov.labels, ov.share, "Share of the row's set that the column's set also selects: |A \u2229 B| / |A|"));
  }
  if (cor.labels.length) figures.append(matrix("spearman", cor.labels, cor.spearman, "Spearman rank correlation of the scores (valid tokens)"));
  if (!figures.children.length) figures.append(h("div", { cls: "muted", text: "no method selects tokens: nothing to compare" }));
  main.append(h("h2", { id: "between", text: "Between methods" }), figures);

  // ---- cost of each pass --------------------------------------------------------------------------------------
  const passes = h("table", { cls: "passes" }, [h("tr", {}, ["pass", "time (s)", "\u00d7 old-log-prob forward",
    "device peak (GB)", "RSS peak increase (GB)", "image samples"].map((t) => h("th", { text: t })))]);
  const forward = num((DATA.passes.old_log_prob || {}).time_s);
  for (const [name, p] of Object.entries(DATA.passes)) {
    passes.append(h("tr", { cls: "pass", "data-pass": name }, [h("td", { text: name }), h("td", { cls: "n", text: short(p.time_s) }),
      h("td", { cls: "n", text: name === "old_log_prob" || !forward ? "" : short(num(p.time_s) / forward) }),
      h("td", { cls: "n", text: short(p.device_peak_gb) }), h("td", { cls: "n", text: short(p.rss_peak_increase_gb) }),
      h("td", { cls: "n", text: short(p["tor/image_sample_fraction"]) })]));
  }
  main.append(h("h2", { id: "cost", text: "Cost of the passes (this run)" }), passes);

  // ---- samples ------------------------------------------------------------------------------------------------
  const details = document.getElementById("details");
  function showDetails(sample, i, col) {
    document.querySelectorAll(".col.selected").forEach((e) => e.classList.remove("selected"));
    col.classList.add("selected");
    const t = sample.tokens;
    const table = h("table", {}, [h("tr", {}, ["method", "set", "weight", "scores"].map((x) => h("th", { text: x })))]);
    for (const m of METHODS) {
      const r = sample.methods[m];
      const scores = Object.entries(r.scores).map(([k, v]) => k + " " + short(v[i])).join(", ");
      table.append(h("tr", { "data-method": m }, [h("td", { text: m }), h("td", { text: r.set[i] }), h("td", { text: short(r.w[i]) }), h("td", { text: scores })]));
    }
    details.replaceChildren(h("b", { text: JSON.stringify(t.text[i]) }),
      h("div", { cls: "muted", text: "sample " + sample.index + ", token " + i + (t.valid[i] ? "" : " (not trained)") +
        (t.image && t.image[i] ? " \u00b7 only the image decides it" : "") }), table);
  }
  const list = h("div", { id: "samples" });
  for (const s of DATA.samples) {
    const art = h("article", { cls: "sample", "data-sample": String(s.index), "data-uid": s.uid, "data-correct": String(s.correct) });
    art.append(h("div", { cls: "sample-head" }, [h("span", {}, [h("b", { text: "sample " + s.index })]),
      h("span", { text: s.correct ? "correct" : "incorrect" }), h("span", { text: "reward " + short(s.reward) }),
      h("span", { text: "acc " + short(s.acc) }), h("span", { text: s.data_source })]));
    const pics = h("div", { cls: "images" });
    const urls = DATA.images[s.uid] || [];
    for (const url of urls) pics.append(h("img", { src: url, alt: "prompt image" }));
    if (!urls.length) pics.append(h("div", { cls: "noimg", text: "no image" }));
    // The first column names the rows (every wrapped line keeps their order).
    const response = h("div", { cls: "response" }, [h("div", { cls: "col labels" },
      METHODS.map((m) => h("span", { cls: "row-label", "data-method": m, text: m })))]);
    const t = s.tokens;
    t.text.forEach((text, i) => {
      const col = h("div", { cls: "col", "data-i": String(i), "data-image": t.image ? String(Boolean(t.image[i])) : null });
      for (const m of METHODS) {
        const r = s.methods[m];
        const span = h("span", { cls: "tok" + (t.valid[i] ? "" : " invalid"), "data-method": m, "data-set": r.set[i],
          "data-weight": String(r.w[i]), title: m + ": " + r.set[i] + ", w " + short(r.w[i]), text: visible(text) });
        span.style.background = COLOUR[r.set[i]] || "";
        span.style.borderBottomWidth = underline(r.w[i]);
        col.append(span);
      }
      col.addEventListener("click", () => showDetails(s, i, col));
      response.append(col);
    });
    art.append(h("div", { cls: "sample-body" }, [pics, h("div", { cls: "texts" }, [
      h("div", { cls: "prompt", text: s.prompt }),
      h("div", { cls: "rows-legend", text: "rows, top to bottom: " + METHODS.join(", ") }), response])]));
    list.append(art);
  }
  main.append(h("h2", { id: "samples", text: "Samples (each once; one row per method under every token)" }), list);
  restyle();
  // #methods, #between, #cost, #samples: the page is built by this script, after the browser looked for the anchor.
  const anchor = location.hash && document.getElementById(location.hash.slice(1));
  if (anchor) anchor.scrollIntoView();
})();
"""
)


def render_page(audit: dict[str, Any]) -> str:
    """The HTML page of an ``audit.json`` record."""
    methods = ", ".join(audit.get("methods", {}))
    title = f"Token-credit audit: {methods}"
    # "</script>" or "<!--" inside a token would end or change the data block; \u003c is the same to JSON.parse.
    data = json.dumps(_json_safe(audit), allow_nan=False, ensure_ascii=False).replace("<", "\\u003c")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n<style id="dynamic-style"></style>\n</head>\n'
        f'<body>\n<header><h1>{html.escape(title)}</h1><div class="meta" id="meta"></div></header>\n'
        '<nav id="controls"></nav>\n<main id="main"><noscript>This page renders its record with JavaScript.</noscript>'
        "</main>\n"
        '<aside id="details"><span class="muted">Click a token for its fate under every method.</span></aside>\n'
        f'<script type="application/json" id="audit-data">{data}</script>\n<script>{_JS}</script>\n</body>\n</html>\n'
    )
