"""Attention weights as seaborn heatmaps, one per head, subword tokens on both axes."""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

from src.visualization.figure import new_figure

MAX_COLUMNS = 4


def to_numpy(array: Any) -> np.ndarray:
    """A torch tensor (any device or dtype) or array-like as a float numpy array, without importing torch."""
    if hasattr(array, "detach"):
        array = array.detach().float().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def _cell_inches(n_tokens: int) -> float:
    # long sentences get smaller cells so a 4-head grid of 100 tokens stays printable
    return min(0.35, max(0.12, 9.0 / max(n_tokens, 1)))


def _font_size(n_tokens: int) -> float:
    return min(9.0, max(4.0, 240.0 / max(n_tokens, 1)))


def plot_attention(
    weights: Any,
    query_tokens: Sequence[str],
    key_tokens: Sequence[str],
    title: str,
) -> Figure:
    """One heatmap per head: row i is how query token i distributes its attention over the keys.

    Args:
        weights: attention probabilities, a tensor or array of shape (H, Tq, Tk), or (Tq, Tk) for one head.
        query_tokens: the Tq subword tokens on the y axis (decoder side for cross-attention).
        key_tokens: the Tk subword tokens on the x axis (encoder side for cross-attention).
        title: figure title, e.g. "decoder layer 2 cross-attention".
    """
    weights = to_numpy(weights)
    if weights.ndim == 2:
        weights = weights[None]
    if weights.ndim != 3:
        raise ValueError(f"attention weights must have shape (H, Tq, Tk) or (Tq, Tk), got {weights.shape}")
    n_heads, n_queries, n_keys = weights.shape
    if (n_queries, n_keys) != (len(query_tokens), len(key_tokens)):
        raise ValueError(
            f"attention weights (Tq, Tk)=({n_queries}, {n_keys}) do not match the tokens: "
            f"{len(query_tokens)} query tokens, {len(key_tokens)} key tokens"
        )
    n_cols = min(n_heads, MAX_COLUMNS)
    n_rows = math.ceil(n_heads / n_cols)
    cell = _cell_inches(max(n_queries, n_keys))
    figure = new_figure(n_cols * (cell * n_keys + 1.6), n_rows * (cell * n_queries + 1.4) + 0.5)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    font = _font_size(max(n_queries, n_keys))
    vmax = float(np.nanmax(weights)) if weights.size else 1.0  # one colour scale for all heads
    # seaborn draws the whole figure inside every heatmap call (to check label overlap), so all
    # heatmaps go in before any tick label: labelling as we go costs O(heads^2) text layout (7 s)
    for head, ax in enumerate(axes.flat[:n_heads]):
        sns.heatmap(
            weights[head], ax=ax, vmin=0.0, vmax=vmax, cmap="viridis",
            xticklabels=False, yticklabels=False, cbar=head == n_heads - 1,
        )  # fmt: skip
    for ax in axes.flat[n_heads:]:
        ax.set_visible(False)
    for head, ax in enumerate(axes.flat[:n_heads]):
        ax.set_xticks(np.arange(n_keys) + 0.5)
        ax.set_yticks(np.arange(n_queries) + 0.5)
        # tokens are data, not mathtext: "$" must not start a formula
        ax.set_xticklabels(key_tokens, rotation=90, fontsize=font, parse_math=False)
        ax.set_yticklabels(query_tokens, rotation=0, fontsize=font, parse_math=False)
        ax.set_title(f"head {head}", fontsize=9)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
    figure.suptitle(title)
    figure.tight_layout()
    return figure
