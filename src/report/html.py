"""The page around the sections: one HTML file with its CSS, scripts, plotly.js and images inlined.

Nothing on the page refers to another file or address: it opens from a USB stick or an e-mail
attachment as it does from the run folder, with no network.
"""

import base64
import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --accent: #2f6fed; --bg: #f7f9fb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
header { padding: 16px 24px 8px; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 20px; }
header p { margin: 0; color: var(--muted); }
nav { position: sticky; top: 0; z-index: 10; background: #fff; border-bottom: 1px solid var(--line); padding: 6px 24px; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; white-space: nowrap; }
main { padding: 8px 24px 48px; max-width: 1400px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 18px 16px; margin: 16px 0; }
section h2 { margin: 0 0 10px; font-size: 17px; }
section h3 { margin: 14px 0 6px; font-size: 14px; }
.note { color: var(--muted); font-size: 12px; margin: 4px 0; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f4f8; }
table.samples td { white-space: pre-wrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
/* auto-fill, not auto-fit: each plot's inline script draws it while the page is still being parsed,
   when the grid holds only the cells before it; auto-fit would give the first one the whole row, and
   it kept that width (drawn past its cell's right edge, legend and all) once its neighbours arrived */
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 12px; }
.grid > * { min-width: 0; overflow: hidden; }  /* a plot shrinks to its cell instead of overflowing it */
.scroll { overflow-x: auto; max-width: 100%; }
details { margin: 4px 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f0f4f8; padding: 8px; overflow-x: auto; font-size: 12px; }
.decision { display: inline-block; padding: 6px 12px; border-radius: 4px; font-weight: 600; margin: 4px 0 8px; }
.decision.promoted, .decision.champion, .decision.production { background: #e3f9e5; color: #0e5814; }
.decision.candidate { background: #fff3c4; color: #8d2b0b; }
.decision.rejected, .decision.failed { background: #ffe3e3; color: #a61b1b; }
.viewer-controls { display: flex; flex-wrap: wrap; gap: 16px; align-items: center; margin-bottom: 8px; }
.viewer-controls input[type=range] { width: 320px; vertical-align: middle; }
figure { margin: 8px 0; }
figure img, .viewer img { max-width: 100%; height: auto; border: 1px solid var(--line); cursor: zoom-in; }
figure img.actual, .viewer img.actual { max-width: none; cursor: zoom-out; }
figure, .viewer { overflow-x: auto; }
figcaption { color: var(--muted); font-size: 12px; }
"""

PAGE_JS = """
(function () {
  var holder = document.getElementById("heatmap-data");
  if (!holder) { return; }  // a run without heatmaps (tracking off) has no viewer
  var figures = JSON.parse(holder.textContent);
  var select = document.getElementById("heatmap-figure");
  var slider = document.getElementById("heatmap-slider");
  var image = document.getElementById("heatmap-image");
  var label = document.getElementById("heatmap-step");
  function show() {
    var figure = figures[Number(select.value)], i = Number(slider.value);
    image.src = figure.images[i];
    image.alt = figure.label + ", step " + figure.steps[i];
    label.textContent = "step " + figure.steps[i] + " (" + (i + 1) + " of " + figure.steps.length + ")";
  }
  select.addEventListener("change", function () {
    var n = figures[Number(select.value)].steps.length;
    slider.max = String(n - 1);
    slider.value = String(n - 1);
    show();
  });
  slider.addEventListener("input", show);
  show();
})();
// Plotly sizes a figure to its box once, when its script runs, and again only on a window resize
// ("responsive"); a box that changes without one (a grid reflowing as the page finishes, a
// scrollbar appearing, a folded section opened) leaves the figure at its old width: redraw it.
if (window.Plotly && window.ResizeObserver) {
  var redraw = new ResizeObserver(function (entries) {
    entries.forEach(function (entry) {
      var plot = entry.target.querySelector(".js-plotly-plot");
      if (plot && plot._fullLayout && Math.abs(plot._fullLayout.width - entry.contentRect.width) > 1) {
        Plotly.Plots.resize(plot);
      }
    });
  });
  document.querySelectorAll(".js-plotly-plot").forEach(function (plot) { redraw.observe(plot.parentElement); });
}
document.querySelectorAll("figure img, .viewer img").forEach(function (img) {
  img.title = "click: actual size / fit to the page";
  img.addEventListener("click", function () { img.classList.toggle("actual"); });
});
"""


@dataclass(frozen=True)
class Section:
    id: str  # the anchor, e.g. "curves"
    title: str
    body: str  # HTML


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def json_script(element_id: str, data: Any) -> str:
    """Data for the page's scripts; ``</`` escaped so no value can close the script element."""
    text = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def image(png: Path, caption: str) -> str:
    return (f'<figure><img src="{data_uri(png)}" alt="{esc(caption)}" loading="eager">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def format_value(value: Any) -> str:
    """Numbers as a reader compares them: 4 significant digits for floats, separators for large ints."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], css_id: str | None = None,
          css_class: str | None = None) -> str:
    """An HTML table; numeric cells right-aligned and formatted."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{esc(format_value(v))}</td>' if _is_number(v)
                        else f"<td>{esc(v)}</td>" for v in row)
        body.append(f"<tr>{cells}</tr>")
    attribute = (f' id="{esc(css_id)}"' if css_id else "") + (
        f' class="{esc(css_class)}"' if css_class else "")
    return (f'<div class="scroll"><table{attribute}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def page(title: str, subtitle: str, sections: Sequence[Section], plotly_js: str) -> str:
    """The whole document: header, a link per section, the sections, and the inlined scripts."""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>\n{s.body}\n</section>'
                     for s in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style>
<script type="text/javascript">{plotly_js}</script>
</head>
<body>
<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>
<nav>{nav}</nav>
<main>
{body}
</main>
<script type="text/javascript">{PAGE_JS}</script>
</body>
</html>
"""
