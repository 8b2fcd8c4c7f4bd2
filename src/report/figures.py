"""Interactive plotly figures of a run: training curves, the gradient-norm heatmap, the confusion matrix.

The figures become ``<div>`` fragments without plotly.js; the page inlines plotly.js once
(``html.page``), so the report needs no network to draw them.
"""

import math
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from src.report.sources import GradNorms

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "height": 340}


def _series(history: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    rows = [row for row in history if key in row]
    return [int(row["step"]) for row in rows], [float(row[key]) for row in rows]


def curve_figures(history: Sequence[dict]) -> dict[str, go.Figure]:
    """Loss (train, valid), learning rate, validation metrics and throughput; a figure only when it has data.

    Train rows carry ``loss``, ``lr``, ``tokens_per_s``; validation rows ``valid_<metric>``.
    """
    figures: dict[str, go.Figure] = {}
    loss = go.Figure()
    for name, key in (("train", "loss"), ("valid", "valid_loss")):
        steps, values = _series(history, key)
        if steps:
            mode = "lines+markers" if len(steps) < 50 else "lines"
            loss.add_trace(go.Scatter(x=steps, y=values, name=name, mode=mode))
    if loss.data:
        # the legend above the plot, right-aligned with it: beside it, it takes width from a half-page cell
        figures["loss"] = loss.update_layout(title="loss (cross-entropy)", xaxis_title="step", **LAYOUT,
                                             legend={"orientation": "h", "x": 1, "xanchor": "right",
                                                     "y": 1.02,
                                                     "yanchor": "bottom"})
    for name, key, title in (("learning rate", "lr", "learning rate"),
                             ("throughput", "tokens_per_s", "tokens / s")):
        steps, values = _series(history, key)
        if steps:
            figures[name] = go.Figure(go.Scatter(x=steps, y=values, name=key, mode="lines")).update_layout(
                title=title, xaxis_title="step", **LAYOUT)
    metrics = sorted(
        {key for row in history for key in row if key.startswith("valid_") and key != "valid_loss"})
    if metrics:
        names = [key.removeprefix("valid_") for key in metrics]
        figure = make_subplots(rows=len(metrics), cols=1, shared_xaxes=True, subplot_titles=names,
                               vertical_spacing=0.12)
        for index, key in enumerate(metrics, start=1):
            steps, values = _series(history, key)
            figure.add_trace(go.Scatter(x=steps, y=values, name=names[index - 1], mode="lines+markers"),
                             row=index, col=1)
        figure.update_xaxes(title_text="step", row=len(metrics), col=1)
        figures["validation metrics"] = figure.update_layout(
            title="validation metrics", **{**LAYOUT, "height": 120 + 220 * len(metrics)}, showlegend=False)
    return figures


def grad_norm_figure(grad: GradNorms) -> go.Figure:
    """Parameter groups (rows) x measured steps (columns), coloured by log10 of the gradient norm.

    Zero or non-finite norms are left blank, as in the training step's PNG (log scale).
    """
    def log10(value: float) -> float | None:
        return math.log10(value) if math.isfinite(value) and value > 0 else None

    z = [[log10(v) for v in row] for row in grad.norms]  # (G, S)
    heatmap = go.Heatmap(
        z=z, x=[str(s) for s in grad.steps], y=list(grad.groups),
                         customdata=[list(row) for row in grad.norms],
        colorscale="Magma", colorbar={"title": {"text": "log10 norm"}},
        hovertemplate="group %{y}<br>step %{x}<br>norm %{customdata:.3g}<extra></extra>",
    )
    height = max(300, 120 + 28 * len(grad.groups))
    return go.Figure(heatmap).update_layout(
        title="gradient L2 norm per parameter group", xaxis_title="step", xaxis_type="category",
        yaxis_autorange="reversed", **{**LAYOUT, "height": height,
                                       "margin": {**LAYOUT["margin"], "l": 160}})


def confusion_figure(labels: Sequence[str], confusion: Sequence[Sequence[int]]) -> go.Figure:
    """Counts per (true class, predicted class): rows are the true classes, as in the evaluate step."""
    size = max(360, 120 + 40 * len(labels))
    heatmap = go.Heatmap(z=[list(row) for row in confusion], x=list(labels), y=list(labels),
                         colorscale="Blues",
                         texttemplate="%{z}",
                         hovertemplate="true %{y}<br>predicted %{x}<br>%{z}<extra></extra>")
    return go.Figure(heatmap).update_layout(
        title="confusion matrix (test)", xaxis_title="predicted", yaxis_title="true",
                                            yaxis_autorange="reversed",
        **{**LAYOUT, "height": size, "width": size + 140})


def plot_div(figure: go.Figure, div_id: str) -> str:
    """The figure as a ``<div>`` and its drawing script, plotly.js left to the page."""
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)
