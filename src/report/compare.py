"""``runs compare A B ... --html FILE``: one self-contained page comparing runs, the offline counterpart
of the ClearML web UI's compare view.

It holds the runs' results side by side (task, family, steps, status, test figures), the config keys
that differ between them, and their training curves overlaid: train and validation loss, learning
rate and each validation metric, one trace per run. plotly.js is inlined: the file opens anywhere.
"""

from pathlib import Path

import plotly.graph_objects as go

from src.report.figures import LAYOUT, plot_div
from src.report.html import Section, page, table
from src.report.sources import read_history
from src.runs.table import Comparison

TITLES = {"loss": "train loss", "valid_loss": "validation loss", "lr": "learning rate"}


def overlaid_curves(histories: dict[str, list[dict]]) -> dict[str, go.Figure]:
    """One figure per series some run has (loss, valid loss, lr, each valid metric), a trace per run."""
    metrics = sorted({key for rows in histories.values() for row in rows for key in row
                      if key.startswith("valid_") and key != "valid_loss"})
    figures = {}
    for key in ["loss", "valid_loss", "lr", *metrics]:
        figure = go.Figure()
        for run_id, rows in histories.items():
            points = [(int(row["step"]), float(row[key])) for row in rows if key in row]
            if points:
                steps, values = zip(*points)
                mode = "lines+markers" if len(points) < 50 else "lines"
                figure.add_trace(go.Scatter(x=steps, y=values, name=run_id, mode=mode))
        if figure.data:
            figures[key] = figure.update_layout(
                title=TITLES.get(key, "validation " + key.removeprefix("valid_")), xaxis_title="step",
                                                **LAYOUT,
                legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"})
    return figures


def render_comparison(comparison: Comparison) -> str:
    """The comparison page as one HTML document."""
    from plotly.offline import get_plotlyjs

    ids = [run.run_id for run in comparison.runs]
    diff_body = (table(["key", *ids], comparison.config_rows, css_class="config") if comparison.config_rows
                 else "<p>The runs have the same config.</p>")
    histories = {
        run.run_id: read_history(run.path / "train" / "train_history.jsonl") for run in comparison.runs}
    figures = overlaid_curves(histories)
    plots = "".join(
        f'<div class="plot">{plot_div(figure, "compare-" + key)}</div>' for key, figure in figures.items())
    curves = (f'<div class="grid">{plots}</div><p class="note">From each run\'s train/train_history.jsonl: '
              "click a run in the legend to hide it, drag to zoom, double-click to reset.</p>"
              if figures else "<p>No run has a training history.</p>")
    sections = [Section("results", "Results", table(comparison.header, comparison.metric_rows)),
                Section("config", f"Config differences ({len(comparison.config_rows)})", diff_body),
                Section("curves", "Training curves, overlaid", curves)]
    return page(f"Run comparison: {len(ids)} runs", " vs ".join(ids), sections, get_plotlyjs())


def write_comparison(comparison: Comparison, out: Path) -> Path:
    """Write the page to ``out`` (its folder is made); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_comparison(comparison), encoding="utf-8")
    return out
