"""The gradient-norm heatmap: layer groups as rows, steps as columns, log colour scale."""

import numpy as np
import pytest
from matplotlib.colors import LogNorm

from src.visualization import plot_curves, plot_grad_norm_heatmap

GROUPS = ["embeddings", "encoder.0", "decoder.0"]


def test_rows_are_groups_columns_are_steps_on_a_log_scale():
    steps = [10, 20, 30, 40]
    norms = np.array([[1.0, 2.0, 4.0, 8.0], [0.1, 0.2, 0.0, 0.4], [1e-3, 1e-3, 1e-3, np.inf]])
    figure = plot_grad_norm_heatmap(GROUPS, steps, norms)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == GROUPS
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "20", "30", "40"]
    mesh = ax.collections[0]
    assert isinstance(mesh.norm, LogNorm)
    assert (mesh.norm.vmin, mesh.norm.vmax) == (1e-3, 8.0)  # zero and inf cells do not set the scale
    values = np.ma.masked_invalid(mesh.get_array()).reshape(3, 4)
    assert values.mask[1, 2] and values.mask[2, 3]  # drawn blank


def test_long_runs_show_a_subset_of_step_labels():
    steps = list(range(0, 1000, 10))
    figure = plot_grad_norm_heatmap(GROUPS, steps, np.ones((3, 100)))
    labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert 10 <= len(labels) <= 20 and labels[0] == "0" and set(labels) <= {str(s) for s in steps}


def test_a_long_run_of_few_groups_keeps_a_readable_aspect(tmp_path):
    """Issue 26 (heatmaps keep a readable aspect): 100 steps of 3 groups was a 16 x 2.4 in strip."""
    from PIL import Image

    from src.visualization.local_plots import save_png

    figure = plot_grad_norm_heatmap(GROUPS, list(range(0, 1000, 10)), np.ones((3, 100)))
    width, height = Image.open(save_png(figure, tmp_path, "grad_norm_by_layer", "heatmap", 1000)).size
    assert width >= 1500 and width / height <= 4.01, (width, height)


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match=r"\(groups, steps\)=\(3, 2\), got \(2, 2\)"):
        plot_grad_norm_heatmap(GROUPS, [1, 2], np.ones((2, 2)))


def test_curves_have_one_line_per_series():
    figure = plot_curves(
        {"train": ([1, 2, 3], [3.0, 2.0, 1.5]), "valid": ([2], [2.5])}, "loss", "nats", log_y=True
    )
    ax = figure.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["train", "valid"]
    assert ax.get_yscale() == "log"
