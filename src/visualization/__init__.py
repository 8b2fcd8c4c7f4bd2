"""Figures for debug images and local PNGs (matplotlib Agg backend, no display, no clearml).

Functions return ``matplotlib.figure.Figure`` objects built without pyplot, so nothing
accumulates in pyplot's global state; the tracker reports and closes them.
"""

import matplotlib

matplotlib.use("Agg")

from src.visualization.attention import plot_attention
from src.visualization.curves import plot_curves, training_curve_figures
from src.visualization.grad_norms import plot_grad_norm_heatmap

__all__ = ["plot_attention", "plot_curves", "plot_grad_norm_heatmap", "training_curve_figures"]
