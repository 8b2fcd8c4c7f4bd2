"""Per-layer-group gradient norms over training steps as one heatmap (layer x step, log colour)."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from src.visualization.attention import MAX_ASPECT, to_numpy
from src.visualization.figure import new_figure

MAX_STEP_LABELS = 20


def plot_grad_norm_heatmap(group_names: Sequence[str], steps: Sequence[int], norms: Any) -> Figure:
    """Rows are parameter groups, columns are logged steps; vanishing or exploding groups stand out.

    Args:
        group_names: the G row labels, e.g. ["embeddings", "encoder.0", ..., "decoder.2"].
        steps: the S training steps at which the norms were measured.
        norms: gradient L2 norms, shape (G, S). Zero or non-finite cells are drawn blank (log scale).
    """
    norms = to_numpy(norms)
    if norms.shape != (len(group_names), len(steps)):
        raise ValueError(
            f"norms must have shape (groups, steps)=({len(group_names)}, {len(steps)}), got {norms.shape}"
        )
    shown = np.where(np.isfinite(norms) & (norms > 0), norms, np.nan)
    positive = shown[~np.isnan(shown)]
    colour = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
    # every k-th step label, so long runs stay readable
    stride = max(1, -(-len(steps) // MAX_STEP_LABELS))
    width = min(16.0, 3.0 + 0.25 * len(steps))
    # few groups: no flat strip
    figure = new_figure(width, max(1.5 + 0.3 * len(group_names), width / MAX_ASPECT))
    ax = figure.subplots()
    sns.heatmap(
        shown, ax=ax, norm=colour, cmap="magma", xticklabels=False, yticklabels=False,
        cbar_kws={"label": "gradient L2 norm (log scale)"}, mask=np.isnan(shown),
    )  # fmt: skip
    positions = np.arange(0, len(steps), stride)
    ax.set_xticks(positions + 0.5)
    ax.set_xticklabels([str(steps[i]) for i in positions], rotation=90)
    ax.set_yticks(np.arange(len(group_names)) + 0.5)
    ax.set_yticklabels(list(group_names), rotation=0, parse_math=False)
    ax.set_xlabel("step")
    ax.set_ylabel("parameter group")
    ax.set_title("gradient norm per parameter group")
    figure.tight_layout()
    return figure
