"""The few figure kinds the lessons draw, on ``new_figure`` (no pyplot state)."""

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from src.visualization.attention import to_numpy
from src.visualization.figure import new_figure


def heatmap(values: Any, rows: Sequence[str], columns: Sequence[str], title: str, *, cmap: str = "viridis",
            xlabel: str = "key", ylabel: str = "query") -> Figure:
    """One matrix with labelled axes and a colour bar.

    Shape: values: (len(rows), len(columns)).
    """
    values = to_numpy(values)
    if values.shape != (len(rows), len(columns)):
        raise ValueError(f"heatmap values of shape {values.shape} do not match {len(rows)} rows x "
                         f"{len(columns)} columns")
    side = min(0.45, 8.0 / max(len(rows), len(columns), 1))
    figure = new_figure(max(4.0, side * len(columns) + 2.0), max(3.0, side * len(rows) + 1.5))
    ax = figure.subplots()
    image = ax.imshow(values, cmap=cmap, aspect="auto")
    figure.colorbar(image, ax=ax)
    if len(columns) <= 40:
        ax.set_xticks(range(len(columns)), list(columns), rotation=90, fontsize=7)
    if len(rows) <= 40:
        ax.set_yticks(range(len(rows)), list(rows), fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def line_plot(x: Sequence[float], series: dict[str, Sequence[float]], xlabel: str, ylabel: str, title: str, *,
              log_x: bool = False, log_y: bool = False, vline: float | None = None) -> Figure:
    """One line per series against a shared x; ``vline``: a dashed vertical line at that x."""
    figure = new_figure(6.0, 3.8)
    ax = figure.subplots()
    for name, values in series.items():
        ax.plot(list(x), list(values), marker="o" if len(x) <= 20 else None, label=name)
    if vline is not None:
        ax.axvline(vline, color="grey", linestyle="--", linewidth=1)
    if log_x:
        ax.set_xscale("log", base=2)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def curves(series: dict[str, Sequence[float]], ylabel: str, title: str, log_y: bool = False) -> Figure:
    """Training curves: each series against its step number."""
    longest = max((len(v) for v in series.values()), default=0)
    figure = line_plot(range(longest),
                       {k: list(v) + [np.nan] * (longest - len(v)) for k, v in series.items()},
                       "step", ylabel, title, log_y=log_y)
    return figure
