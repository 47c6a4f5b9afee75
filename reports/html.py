"""`index.html`: one self-contained page (it opens with the network off).

Order: the verdict first (the findings table), then the figures (with a line for each one left
out), the key tables, and last the provenance (inputs with their SHA-256, what was measured when
the run was made, metadata from the tables). Vega, Vega-Lite and vega-embed are inlined once; each
figure's spec sits in a `<script type="application/json">` and is drawn by vega-embed as SVG,
scaled down to the page's width so that a 1,280-pixel window never scrolls sideways. The page
records its own failures: a chart that does not render shows its error on the page (and on the
console), and `<body data-rendered="N">` counts the charts drawn, so a headless browser can check
it; `data-overflow-x` is how many pixels the page is wider than its window once drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from reports.export import javascript_bundle, spec_json
from reports.summary import table_rows

# Nothing may be wider than the page: charts scale down (their SVG keeps its aspect ratio), long
# tokens in cells (configs, hashes, paths) wrap anywhere.
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1100px;
  color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; max-width: 100%; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top;
  overflow-wrap: anywhere; }
th { background: #f4f4f4; } code { font-size: 0.9em; word-break: break-all; }
figure { margin: 1.5em 0; max-width: 100%; } figcaption { font-size: 0.85em; color: #555; }
.chart, .chart .vega-embed { max-width: 100%; }
.chart svg { max-width: 100%; height: auto; }
.mark-reproduced { color: #1a7f37; } .mark-not-reproduced { color: #b42318; }
.mark-inconclusive, .mark-not-testable { color: #8a6d00; }
#report-errors { color: #b42318; white-space: pre-wrap; }
"""

# Draws every chart; failures go to the console and onto the page, never silently blank.
_EMBED = """
(function () {
  var errors = [];
  function fail(what, err) {
    errors.push(what + ": " + err);
    console.error("chart " + what + " failed: " + err);
    var box = document.getElementById("report-errors");
    box.textContent = errors.join("\\n");
    box.hidden = false;
  }
  window.addEventListener("error", function (e) { fail("page", e.message); });
  var charts = document.querySelectorAll("div.chart[data-figure]");
  var pending = [];
  charts.forEach(function (div) {
    var name = div.getAttribute("data-figure");
    try {
      var spec = JSON.parse(document.getElementById("spec-" + name).textContent);
      pending.push(vegaEmbed(div, spec, {actions: false, renderer: "svg"})
        .catch(function (e) { fail(name, e); }));
    } catch (e) { fail(name, e); }
  });
  Promise.all(pending).then(function () {
    var root = document.scrollingElement || document.documentElement;
    document.body.setAttribute("data-overflow-x", String(root.scrollWidth - root.clientWidth));
    document.body.setAttribute("data-rendered", String(charts.length - errors.length));
  });
})();
"""


def _script_json(text: str) -> str:
    # Inside <script> only "</" could end the element early; \\u003c is the same JSON string.
    return text.replace("<", "\\u003c")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["<table><thead><tr>"]
    out += [f"<th>{escape(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _findings(doc: Mapping[str, Any]) -> str:
    if not doc["findings"]:
        return "<p>No findings were tested on this run.</p>"
    rows = []
    for f in doc["findings"]:
        css = "mark-" + f["mark"].replace(" ", "-")
        rows.append(
            f"<tr><td>{escape(f['key'])}</td><td>{escape(f['claim'])}</td>"
            f'<td class="{css}"><b>{escape(f["mark"])}</b></td>'
            f"<td>{escape(f['evidence'])}</td></tr>"
        )
    head = "<tr><th></th><th>claim (the paper's)</th><th>mark</th><th>evidence</th></tr>"
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _figures(
    figures: Sequence[Mapping[str, Any]], specs: Mapping[str, dict[str, Any]], images: bool
) -> str:
    out = []
    for f in figures:
        if not f.get("drawn"):
            continue
        name = escape(f["name"])
        out.append(
            f'<figure id="figure-{name}"><div class="chart" data-figure="{name}"></div>'
            f"<figcaption>{escape(f['title'])}"
            + (f". {escape(f['note'])}" if f.get("note") else "")
            + (
                f' (<a href="figures/{name}.png">PNG</a>, <a href="figures/{name}.svg">SVG</a>)'
                if images
                else ""
            )
            + "</figcaption>"
            f'<script type="application/json" id="spec-{name}">'
            f"{_script_json(spec_json(specs[f['name']]))}</script></figure>"
        )
    missing = [f for f in figures if not f.get("drawn")]
    if missing:
        out.append("<h3>Left out</h3><ul>")
        out += [f"<li>{escape(f['title'])}: {escape(f['missing'])}</li>" for f in missing]
        out.append("</ul>")
    return "\n".join(out) if out else "<p>No figures.</p>"


def render_html(
    doc: Mapping[str, Any], specs: Mapping[str, dict[str, Any]], images: bool = True
) -> str:
    """The page for the summary document `doc` and the Vega-Lite spec of each drawn figure
    (`images`: link each figure's PNG and SVG beside the page)."""
    meta = {m["key"]: m["value"] for m in doc["metadata"]}
    title = (
        f"Test-time compute report: {meta.get('model_id', 'unknown model')} on "
        f"{meta.get('dataset_id', 'unknown dataset')}"
    )
    tables = table_rows(doc)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style>",
        f'<script type="text/javascript">{javascript_bundle()}</script>',
        "</head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>Budgets in {escape(doc['unit'])}; every accuracy with its "
        f"{100 * doc['ci']:.0f}% confidence interval in brackets.</p>",
        '<pre id="report-errors" hidden></pre>',
        "<h2>Findings</h2>",
        _findings(doc),
        "<h2>Figures</h2>",
        _figures(doc["figures"], specs, images),
        "<h2>Key tables</h2>",
    ]
    titles = {
        "plan": "Accuracy per budget: compute-optimal against the baselines",
        "choices": "Compute-optimal choice per difficulty bin",
        "promise": "Policy promise per bin (and what held-out problems realised)",
    }
    for key, name in titles.items():
        head, rows = tables[key]
        parts.append(f"<h3>{escape(name)}</h3>")
        parts.append(_table(head, rows) if rows else "<p>Not in this run.</p>")
    if doc["left_out"]:
        parts.append("<h3>Left out</h3><ul>")
        parts += [f"<li>{escape(line)}</li>" for line in doc["left_out"]]
        parts.append("</ul>")
    parts += [
        "<h2>Provenance</h2>",
        _table(["input", "SHA-256"], [[i["file"], i["sha256"]] for i in doc["inputs"]]),
        *[f"<p>{escape(line)}</p>" for line in doc.get("measured", [])],
        _table(
            ["metadata", "value", "from"],
            [[m["key"], str(m["value"]), m["file"]] for m in doc["metadata"]],
        ),
        f'<script type="text/javascript">{_EMBED}</script>',
        "</body></html>",
        "",
    ]
    return "\n".join(parts)
