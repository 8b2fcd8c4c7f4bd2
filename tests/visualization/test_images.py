"""Image figures: one panel per image, layer and head, or filter; drawn fast."""


import torch

from src.visualization.images import plot_cls_attention, plot_image_grid, plot_patch_filters, plot_rollout


def panels(figure):
    return [ax for ax in figure.axes if ax.images]


def test_image_grid_has_one_titled_panel_per_image():
    figure = plot_image_grid(torch.rand(13, 28, 28), [f"{k}\n/ x" for k in range(13)], n_cols=5, title="t")
    assert len(panels(figure)) == 13 and [ax.get_title() for ax in panels(figure)][:2] == ["0\n/ x", "1\n/ x"]
    assert plot_image_grid(torch.rand(0, 28, 28), [], title="no mistakes").texts  # says so instead of failing


def test_cls_attention_stretches_each_patch_over_its_pixels():
    weights = torch.zeros(3, 2, 49)
    weights[:, :, 0] = 1.0  # all attention on the top-left patch
    figure = plot_cls_attention(torch.rand(28, 28), weights, "t")
    overlays = [ax.images[1] for ax in panels(figure)]
    assert len(overlays) == 3 * 2
    assert overlays[0].get_array().shape == (7, 7) and overlays[0].get_array()[0, 0] == 1.0
    assert overlays[0].get_extent() == [-0.5, 27.5, 27.5, -0.5]


def test_rollout_and_filters_have_a_panel_each():
    rollout = plot_rollout(torch.rand(4, 28, 28), torch.rand(4, 49), ["a"] * 4, "t")
    filters = plot_patch_filters(torch.randn(96, 1, 4, 4), max_filters=64)
    big = plot_cls_attention(torch.rand(28, 28), torch.rand(6, 4, 49), "t")
    for figure in (rollout, filters, big):
        figure.canvas.draw()
    assert len(panels(rollout)) == 4 and len(panels(filters)) == 64 and len(panels(big)) == 24
