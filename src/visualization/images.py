"""Figures of images: example and mistake grids, [CLS]-attention overlays, rollout, patch filters.

The attention maps are the [CLS] query's weights over the N patches, a (sqrt N, sqrt N) grid
stretched over the image with ``extent``, so a patch's colour sits on its own pixels.
"""

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from src.visualization.figure import new_figure

CELL = 1.25  # inches per small image: 28 pixels stay legible, a 10 x 10 grid stays under 13 in
OVERLAY = {"cmap": "inferno", "alpha": 0.55, "interpolation": "nearest"}


def _as_array(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float32)


def _grid(n: int, n_cols: int, title: str | None, cell: float = CELL,
          title_lines: int = 1) -> tuple[Figure, list]:
    """Axes for ``n`` small images, ``title_lines`` lines of 6 pt text above each."""
    n_cols = max(1, min(n_cols, n))
    n_rows = math.ceil(n / n_cols)
    figure = new_figure(cell * n_cols, (cell + 0.12 * title_lines) * n_rows + (0.35 if title else 0.0))
    # room for suptitle
    figure.set_layout_engine("constrained", w_pad=0.02, h_pad=0.02, wspace=0.02, hspace=0.02)
    axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel().tolist()
    for ax in axes:
        ax.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=9)
    return figure, axes


def plot_image_grid(images, titles: Sequence[str], n_cols: int = 10, title: str | None = None) -> Figure:
    """Grey images in a grid, each with a small title (class name, or "predicted / true").

    Shape:
        images: (N, H, W) pixel values (any range: each image is shown on its own min..max).
    """
    images = _as_array(images)
    if len(images) == 0:  # e.g. no mistakes to show: a figure that says so
        figure = new_figure(4, 1)
        figure.text(0.5, 0.5, f"{title or ''}\n(no images)", ha="center", va="center", fontsize=9)
        return figure
    figure, axes = _grid(len(images), n_cols, title, title_lines=max(t.count("\n") + 1 for t in titles))
    for ax, image, text in zip(axes, images, titles):
        ax.imshow(image, cmap="gray")
        ax.set_title(text, fontsize=6)
    return figure


def _overlay(ax, image: np.ndarray, patch_map: np.ndarray) -> None:
    """``patch_map`` (g, g) in colour over ``image`` (H, W) in grey."""
    h, w = image.shape
    ax.imshow(image, cmap="gray")
    ax.imshow(patch_map, extent=(-0.5, w - 0.5, h - 0.5, -0.5), **OVERLAY)


def plot_cls_attention(image, weights, title: str) -> Figure:
    """What the [CLS] token attends to, one overlay per layer (rows) and head (columns).

    Shape:
        image: (H, W); weights: (L, H_heads, N) the [CLS] row of each layer over the patches.
    """
    image, weights = _as_array(image), _as_array(weights)
    n_layers, n_heads, n = weights.shape
    side = math.isqrt(n)
    figure, axes = _grid(n_layers * n_heads, n_heads, title)
    for index, ax in enumerate(axes[: n_layers * n_heads]):
        layer, head = divmod(index, n_heads)
        _overlay(ax, image, weights[layer, head].reshape(side, side))  # (N,) -> (g, g), row-major patches
        ax.set_title(f"layer {layer + 1} head {head + 1}", fontsize=6)
    return figure


def plot_rollout(images, rollouts, titles: Sequence[str], title: str) -> Figure:
    """Attention rollout of the [CLS] token over the patches, one overlay per image.

    Shape:
        images: (B, H, W); rollouts: (B, N) the [CLS] row of the rollout over the patches.
    """
    images, rollouts = _as_array(images), _as_array(rollouts)
    side = math.isqrt(rollouts.shape[-1])
    figure, axes = _grid(len(images), len(images), title, cell=1.6, title_lines=2)
    for ax, image, rollout, text in zip(axes, images, rollouts, titles):
        _overlay(ax, image, rollout.reshape(side, side))
        ax.set_title(text, fontsize=6)
    return figure


def plot_patch_filters(weight, max_filters: int = 64, title: str = "patch-embedding filters") -> Figure:
    """The rows of the patch projection E as P x P images, one per output channel (first channel in).

    Blue-white-red around zero: red pixels raise the channel, blue ones lower it (the paper's Fig. 7
    shows the principal components of the same filters).

    Shape:
        weight: (D, C_in, P, P), the Conv2d weight of ``PatchEmbedding``.
    """
    filters = _as_array(weight)[:max_filters, 0]  # (D, P, P)
    figure, axes = _grid(len(filters), 8, title, cell=0.7, title_lines=0)
    figure.set_facecolor("0.75")  # grey gaps: white is zero weight in "bwr"
    for ax, patch in zip(axes, filters):
        limit = float(np.abs(patch).max()) or 1.0
        ax.imshow(patch, cmap="bwr", vmin=-limit, vmax=limit, interpolation="nearest")
    return figure
