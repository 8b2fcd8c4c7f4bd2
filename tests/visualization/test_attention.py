"""Attention heatmaps carry the real subword tokens, one panel per head."""

import numpy as np
import pytest
import torch

from src.visualization import plot_attention

QUERY = ["<s>", "▁The", "▁house", "▁is", "▁small", "$5"]
KEYS = ["▁Das", "▁Haus", "▁ist", "▁klein", "</s>"]


def _labels(ticks) -> list[str]:
    return [tick.get_text() for tick in ticks]


def _head_axes(figure):
    return [ax for ax in figure.axes if ax.get_visible() and "head " in ax.get_title()]


def test_every_head_has_the_tokens_on_both_axes():
    weights = torch.softmax(torch.randn(3, len(QUERY), len(KEYS)), dim=-1)
    figure = plot_attention(weights, QUERY, KEYS, "decoder layer 0 cross-attention")
    heads = _head_axes(figure)
    assert [ax.get_title() for ax in heads] == ["head 0", "head 1", "head 2"]
    for ax in heads:
        assert _labels(ax.get_xticklabels()) == KEYS  # "$5" stays text, not mathtext
        assert _labels(ax.get_yticklabels()) == QUERY
        # tick i sits on cell i: cells span [i, i + 1]
        np.testing.assert_allclose(ax.get_xticks(), np.arange(len(KEYS)) + 0.5)
    assert figure.texts[0].get_text() == "decoder layer 0 cross-attention"


def test_rows_are_queries_and_columns_are_keys():
    weights = np.zeros((1, 2, 3))
    weights[0, 1, 2] = 1.0  # query 1 attends only to key 2
    figure = plot_attention(weights, ["q0", "q1"], ["k0", "k1", "k2"], "t")
    mesh = _head_axes(figure)[0].collections[0]
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(2, 3), weights[0])


def test_one_head_as_a_matrix_and_unused_grid_cells_hidden():
    figure = plot_attention(np.eye(3), ["a", "b", "c"], ["a", "b", "c"], "self")
    assert len(_head_axes(figure)) == 1
    five_heads = plot_attention(np.ones((5, 2, 2)) / 2, ["a", "b"], ["c", "d"], "five")
    assert len(_head_axes(five_heads)) == 5  # a 2 x 4 grid, three cells hidden


def test_figure_grows_with_sentence_length():
    short = plot_attention(np.ones((2, 4, 4)) / 4, list("abcd"), list("abcd"), "s").get_size_inches()
    tokens = [f"t{i}" for i in range(30)]
    long = plot_attention(np.ones((2, 30, 30)) / 30, tokens, tokens, "l").get_size_inches()
    assert long[0] > short[0] and long[1] > short[1]


def test_mismatched_tokens_are_reported_with_both_shapes():
    with pytest.raises(
        ValueError, match=r"\(Tq, Tk\)=\(2, 3\) do not match the tokens: 2 query tokens, 2 key tokens"
    ):
        plot_attention(np.ones((1, 2, 3)), ["a", "b"], ["c", "d"], "t")
    with pytest.raises(ValueError, match="shape \\(L, H, Tq, Tk\\), \\(H, Tq, Tk\\) or \\(Tq, Tk\\)"):
        plot_attention(np.ones((1, 1, 1, 2, 3)), ["a", "b"], ["c", "d", "e"], "t")


def test_layer_by_head_grid_labels_the_shared_axes_once():
    """(L, H, Tq, Tk): a row per layer, a column per head; with label_every_head=False the query
    tokens sit on the first column and the key tokens on the bottom row, which every panel of that
    row/column shares (same tick positions, one cell per token)."""
    weights = torch.softmax(torch.randn(3, 2, len(QUERY), len(KEYS)), dim=-1)
    figure = plot_attention(weights, QUERY, KEYS, "cross", label_every_head=False)
    panels = _head_axes(figure)
    assert [ax.get_title() for ax in panels] == [f"layer {l} head {h}" for l in range(3) for h in range(2)]
    for index, ax in enumerate(panels):
        layer, head = divmod(index, 2)
        np.testing.assert_allclose(ax.get_xticks(), np.arange(len(KEYS)) + 0.5)
        np.testing.assert_allclose(ax.get_yticks(), np.arange(len(QUERY)) + 0.5)
        assert _labels(ax.get_yticklabels()) == (QUERY if head == 0 else [""] * len(QUERY))
        assert _labels(ax.get_xticklabels()) == (KEYS if layer == 2 else [""] * len(KEYS))
        # panel (layer, head) shows exactly that layer's head
        mesh = np.asarray(ax.collections[0].get_array()).reshape(len(QUERY), len(KEYS))
        np.testing.assert_allclose(mesh, weights[layer, head].numpy(), rtol=1e-6)
    full = plot_attention(weights, QUERY, KEYS, "cross")  # default: tokens on every panel
    assert all(_labels(ax.get_xticklabels()) == KEYS and _labels(ax.get_yticklabels()) == QUERY
               for ax in _head_axes(full))


def test_long_sentences_keep_readable_labels_and_cells():
    tokens = [f"t{i}" for i in range(60)]
    figure = plot_attention(np.ones((2, 60, 60)) / 60, tokens, tokens, "long")
    heads = _head_axes(figure)
    for ax in heads:
        assert min(t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()) >= 7
        assert ax.get_position().height * figure.get_figheight() / len(tokens) >= 0.2  # inches per token
    # the last panel gives ~15% of its width to the colour bar
    assert heads[0].get_position().width * figure.get_figwidth() / len(tokens) >= 0.2


def test_a_two_line_title_sits_above_the_panels():
    title = "cross attention\nshowing first 4"
    figure = plot_attention(np.ones((2, 4, 4)) / 4, list("abcd"), list("abcd"), title)
    renderer = figure.canvas.get_renderer()
    title_bottom = figure.texts[0].get_window_extent(renderer).y0
    panel_top = max(ax.get_tightbbox(renderer).y1 for ax in _head_axes(figure))
    assert title_bottom >= panel_top


@pytest.mark.parametrize("shape", [(1, 2, 1, 48), (2, 4, 1, 48), (4, 1, 48), (1, 1, 48)],
                         ids=["cls-1x2", "cls-2x4", "one-layer-4-heads", "one-head"])
def test_a_wide_heatmap_png_keeps_a_readable_aspect(tmp_path, shape):
    """Issue 26: the [CLS] probe's heatmap (one query row over 48 subwords, 1 layer x 2 heads) was a
    2,240 x 210 px PNG whose colorbar was a sliver. Saved as the tracker saves it, it is at most 4:1,
    and every head is still drawn with its 48 key tokens."""
    from PIL import Image

    from src.visualization.local_plots import save_png

    keys = [f"t{i}" for i in range(48)]
    weights = torch.softmax(torch.randn(*shape), dim=-1)
    figure = plot_attention(weights, keys[:1], keys, '[CLS] attention · step 5 · "a review"',
                            label_every_head=False)
    width, height = Image.open(save_png(figure, tmp_path, "attention/cls", "text 0", 5)).size
    assert width / height <= 4.01, (width, height)
    assert height >= 280  # the 210 px of the squashed figure, and more
    panels = _head_axes(figure)
    assert len(panels) == int(np.prod(shape[:-2]))
    assert all(len(ax.get_xticks()) == 48 for ax in panels)
    colorbar = [ax for ax in figure.axes if ax.get_visible() and ax not in panels]
    assert len(colorbar) == 1 and colorbar[0].get_position().height * height >= 50  # pixels: a readable bar
