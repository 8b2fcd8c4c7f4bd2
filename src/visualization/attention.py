"""Attention weights as seaborn heatmaps, one per head, subword tokens on both axes."""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

from src.visualization.figure import new_figure

MAX_COLUMNS = 4
MIN_CELL_INCHES = 0.2  # 7 pt labels need a cell of ~0.1 in; 0.2 in keeps colours readable too
MIN_FONT_POINTS = 7.0
MAX_ASPECT = 4.0  # width / height: wider, and the colorbar (one panel's height) is squashed to a sliver


def to_numpy(array: Any) -> np.ndarray:
    """A torch tensor (any device or dtype) or array-like as a float numpy array, without importing torch."""
    if hasattr(array, "detach"):
        array = array.detach().float().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def _cell_inches(n_tokens: int) -> float:
    """Side of one token's cell: 0.25 in up to 24 tokens, shrinking to a readable floor after that.

    The figure keeps growing with the token count; callers that draw often (the training probe)
    cap the tokens they pass instead of letting labels shrink.
    """
    return min(0.25, max(MIN_CELL_INCHES, 6.0 / max(n_tokens, 1)))


def _font_size(n_tokens: int) -> float:
    """Tick label size in points: 8 up to 25 tokens, never under ``MIN_FONT_POINTS``."""
    return min(8.0, max(MIN_FONT_POINTS, 200.0 / max(n_tokens, 1)))


def _layout(n_panels: int, n_cols: int, panel: tuple[float, float],
            extra_height: float) -> tuple[int, int, float, float]:
    """Grid rows and columns, and figure width and height in inches, with width / height <= ``MAX_ASPECT``.

    Few query rows against many keys (a [CLS] row over 48 subwords) make wide, flat panels: the
    columns are folded into more rows first (down to one column), then the panels are made taller.
    """
    n_cols = min(n_cols, n_panels)
    while n_cols > 1 and n_cols * panel[0] > MAX_ASPECT * (
            math.ceil(n_panels / n_cols) * panel[1] + extra_height):
        n_cols -= 1
    n_rows = math.ceil(n_panels / n_cols)
    width = n_cols * panel[0]
    height = max(n_rows * panel[1] + extra_height, width / MAX_ASPECT)
    return n_rows, n_cols, width, height


def plot_attention(
    weights: Any,
    query_tokens: Sequence[str],
    key_tokens: Sequence[str],
    title: str,
    *,
    label_every_head: bool = True,
) -> Figure:
    """One heatmap per head: row i is how query token i distributes its attention over the keys.

    Args:
        weights: attention probabilities, a tensor or array of shape (L, H, Tq, Tk) for every layer
            (one grid row per layer, one column per head), (H, Tq, Tk) for one layer (heads side by
            side, wrapped after four), or (Tq, Tk) for one head.
        query_tokens: the Tq subword tokens on the y axis (decoder side for cross-attention).
        key_tokens: the Tk subword tokens on the x axis (encoder side for cross-attention).
        title: figure title, e.g. "decoder layer 2 cross-attention"; may hold several lines.
        label_every_head: tokens on both axes of every panel. False labels only the first column's
            y axis and the bottom row's x axis (every panel shares them): a third of the text to lay
            out, which is most of the drawing time of a large grid.
    """
    weights = to_numpy(weights)
    if weights.ndim == 2:
        weights = weights[None]
    if weights.ndim not in (3, 4):
        raise ValueError("attention weights must have shape (L, H, Tq, Tk), (H, Tq, Tk) or (Tq, Tk), got "
                         f"{weights.shape}")
    n_queries, n_keys = weights.shape[-2:]
    if (n_queries, n_keys) != (len(query_tokens), len(key_tokens)):
        raise ValueError(
            f"attention weights (Tq, Tk)=({n_queries}, {n_keys}) do not match the tokens: "
            f"{len(query_tokens)} query tokens, {len(key_tokens)} key tokens"
        )
    if weights.ndim == 4:
        n_cols = weights.shape[1]
        panels = [(weights[layer, head], f"layer {layer} head {head}")
                  for layer in range(weights.shape[0]) for head in range(n_cols)]
    else:
        n_cols = min(weights.shape[0], MAX_COLUMNS)
        panels = [(weights[head], f"head {head}") for head in range(weights.shape[0])]
    cell = _cell_inches(max(n_queries, n_keys))
    title_inches = 0.4 + 0.25 * title.count("\n")  # above the panels
    n_rows, n_cols, width, height = _layout(len(panels), n_cols,
                                            (cell * n_keys + 1.6, cell * n_queries + 1.4),
                                            0.1 + title_inches)
    figure = new_figure(width, height)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    font = _font_size(max(n_queries, n_keys))
    vmax = float(np.nanmax(weights)) if weights.size else 1.0  # one colour scale for all heads
    # seaborn draws the whole figure inside every heatmap call (to check tick label overlap). Only
    # the panel being drawn is visible meanwhile, and tick labels come after: otherwise every call
    # redraws all earlier panels and their labels, O(panels^2) text layout (seconds per figure).
    for ax in axes.flat:
        ax.set_visible(False)
    for index, ((panel, _), ax) in enumerate(zip(panels, axes.flat)):
        ax.set_visible(True)
        sns.heatmap(
            panel, ax=ax, vmin=0.0, vmax=vmax, cmap="viridis", xticklabels=False, yticklabels=False,
                    cbar=False,
        )  # fmt: skip
        ax.set_visible(False)
    for index, ((_, name), ax) in enumerate(zip(panels, axes.flat)):  # grid cells past the panels stay hidden
        ax.set_visible(True)
        ax.set_xticks(np.arange(n_keys) + 0.5)
        ax.set_yticks(np.arange(n_queries) + 0.5)
        bottom = index + n_cols >= len(panels)  # no visible panel below this one
        # tokens are data, not mathtext: "$" must not start a formula
        if label_every_head or bottom:
            ax.set_xticklabels(key_tokens, rotation=90, fontsize=font, parse_math=False)
            ax.set_xlabel("key")
        else:
            ax.set_xticklabels([])
        if label_every_head or index % n_cols == 0:
            ax.set_yticklabels(query_tokens, rotation=0, fontsize=font, parse_math=False)
            ax.set_ylabel("query")
        else:
            ax.set_yticklabels([])
        ax.set_title(name, fontsize=9)
    figure.suptitle(title)
    bar_inches = 0.9  # the colorbar, its ticks and their labels, right of the grid
    figure.tight_layout(rect=(0.0, 0.0, 1.0 - bar_inches / width,
                              1.0 - title_inches / figure.get_figheight()))
    # one colorbar for the whole grid, spanning every row however flat one row is
    boxes = [ax.get_position() for ax in axes.flat if ax.get_visible()]
    bottom, top = min(b.y0 for b in boxes), max(b.y1 for b in boxes)
    bar = figure.add_axes((max(b.x1 for b in boxes) + 0.15 / width, bottom, 0.15 / width, top - bottom))
    figure.colorbar(axes.flat[0].collections[0], cax=bar)
    return figure
