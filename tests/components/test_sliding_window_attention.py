"""Sliding-window attention equals dense attention under the band mask, forward and backward.

The dense (T, T) band through ``scaled_dot_product_attention`` is the reference; the blocked
implementation never builds it. Cases cover padded rows, odd lengths, lengths that are not a
multiple of the window, windows wider than the sequence, causal attention and a cached decoding step.
"""

import itertools

import pytest
import torch

from src.components.attention import MultiHeadAttention, scaled_dot_product_attention
from src.components.kv_cache import KVCache
from src.components.sliding_window_attention import band_mask, banded_blocks, sliding_window_attention
from src.components.sliding_window_flash_attention import BandLayout

TOL = 1e-5
LENGTHS = [1, 2, 5, 8, 9, 16, 17, 31]  # odd, multiples of the window and not, shorter than it
WINDOWS = [1, 3, 4, 8, 40]  # 40: wider than every sequence


def _qkv(batch: int, length: int, heads: int = 2, dim: int = 8, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, length, dim, generator=generator, requires_grad=True) for _ in range(3)]


def _key_mask(batch: int, length: int) -> torch.Tensor:
    """Row 0 all real; row 1 padded from the middle (its last queries see only padding)."""
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, max(1, length // 2):] = False
    return mask


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def test_band_mask_is_the_window_definition():
    band = band_mask(6, 6, window=2)
    for i, j in itertools.product(range(6), range(6)):
        assert band[i, j] == (abs(i - j) <= 2)
    causal = band_mask(6, 6, window=2, causal=True)
    for i, j in itertools.product(range(6), range(6)):
        assert causal[i, j] == (0 <= i - j <= 2)
    # a decoding step: 2 new queries are the last 2 of 6 positions
    assert torch.equal(band_mask(2, 6, 2, causal=True), causal[4:])


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_equals_the_dense_band_reference_forward_and_backward(backend, causal):
    for length, window in itertools.product(LENGTHS, WINDOWS):
        q, k, v = _qkv(2, length, seed=length * 100 + window)
        key_mask = _key_mask(2, length)
        dense = band_mask(length, length, window, causal) & key_mask[:, None, None, :]
        expected, _ = scaled_dot_product_attention(q, k, v, dense)
        out, _ = sliding_window_attention(q, k, v, window, key_mask, causal, backend)
        grad = torch.randn_like(expected)
        expected_grads = torch.autograd.grad(expected, (q, k, v), grad)
        grads = torch.autograd.grad(out, (q, k, v), grad)
        diff = _max_diff([out, *grads], [expected, *expected_grads])
        assert diff <= TOL, f"length {length}, window {window}: max diff {diff:.2e}"


def test_padded_rows_match_including_queries_that_see_only_padding():
    q, k, v = _qkv(2, 17)
    key_mask = _key_mask(2, 17)  # row 1: real up to 8; with window 3, queries 12.. see no real key
    out, _ = sliding_window_attention(q, k, v, 3, key_mask)
    expected, _ = scaled_dot_product_attention(q, k, v, band_mask(17, 17, 3) & key_mask[:, None, None, :])
    assert torch.allclose(out, expected, atol=TOL)
    assert torch.equal(out[1, :, 12:], torch.zeros_like(out[1, :, 12:]))  # zeros, not NaN
    assert not torch.isnan(out).any()


@pytest.mark.parametrize("causal", [False, True])
def test_weights_for_heatmaps_are_the_dense_reference_weights(causal):
    q, k, v = _qkv(2, 19)
    key_mask = _key_mask(2, 19)
    _, weights = sliding_window_attention(q, k, v, 4, key_mask, causal, need_weights=True)
    _, expected = scaled_dot_product_attention(q, k, v,
                                               band_mask(19, 19, 4, causal) & key_mask[:, None, None, :])
    assert weights.shape == (2, 2, 19, 19)
    assert torch.allclose(weights, expected, atol=TOL)
    outside = ~band_mask(19, 19, 4, causal)
    assert torch.equal(weights[..., outside], torch.zeros_like(weights[..., outside]))


def test_blocked_layout_scores_o_n_w_pairs_not_n_squared():
    """The scores computed are B x (n / w) blocks x w queries x 3w keys (2w causal), linear in n."""
    for length in (1024, 4096):
        blocks = banded_blocks(length, 64, None, False, 1, torch.device("cpu"))
        assert blocks.key_index.shape == (length // 64, 3 * 64)  # keys per block, whatever the length
        assert blocks.mask.numel() == 3 * 64 * length
        causal = banded_blocks(length, 64, None, True, 1, torch.device("cpu"))
        assert causal.key_index.shape == (length // 64, 2 * 64)
    assert blocks.mask.numel() < length * length / 20


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_fused_overlapping_blocks_equal_the_dense_band_over_many_blocks(causal):
    """The fused CPU path over several of its blocks (64 to 192 queries each), two sequences laid end to
    end, one padded: windows that reach past either end, into the other sequence's rows, over padding."""
    for length, window in [(150, 5), (200, 64), (301, 100), (389, 200)]:
        layout = BandLayout(2, length, window, causal, None, torch.device("cpu"))
        assert layout.n_blocks >= 2, (length, window)  # several blocks, not one dense one
        q, k, v = _qkv(2, length, seed=length)
        key_mask = _key_mask(2, length)
        expected, _ = scaled_dot_product_attention(q, k, v, band_mask(length, length, window, causal)
                                                   & key_mask[:, None, None, :])
        out, _ = sliding_window_attention(q, k, v, window, key_mask, causal)
        grad = torch.randn_like(expected)
        diff = _max_diff([out, *torch.autograd.grad(out, (q, k, v), grad)],
                         [expected, *torch.autograd.grad(expected, (q, k, v), grad)])
        assert diff <= TOL, f"length {length}, window {window}: max diff {diff:.2e}"


def test_fused_layout_reads_keys_in_place_and_scores_o_n_w_pairs():
    """Every block's window is a view of one key buffer (no gathered copies); the scores computed are
    N blocks x b queries x (b + 2w) keys, linear in n."""
    for length in (2048, 8192):
        layout = BandLayout(1, length, 256, False, None, torch.device("cpu"))
        buffer = layout.keys(torch.randn(1, 1, length, 4))
        windows = layout.key_blocks(buffer, 0, layout.n_blocks)
        assert windows.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr()
        assert windows.shape[2] == layout.size + 2 * 256  # K keys per block, whatever the length
        assert length <= layout.n_blocks * layout.size < length + layout.size  # N*b queries: T, rounded up
    assert torch.equal(windows[3, 0], buffer[3 * layout.size: 3 * layout.size + windows.shape[2], 0])
    assert layout.n_blocks * layout.size * windows.shape[2] < length * length / 10


def test_fused_cpu_path_holds_memory_near_full_attention():
    """The fused path saves O(n d) for backward, not the blocks' 3x copies of the keys."""
    q, k, v = (torch.randn(1, 2, 512, 8, requires_grad=True) for _ in range(3))
    out, _ = sliding_window_attention(q, k, v, 32)
    saved = out.grad_fn.saved_tensors
    window_padding = 2 * (2 * 32) * 2 * 8  # the key and value buffers' w zero rows at each end
    assert sum(t.numel() for t in saved) <= 4 * q.numel() + window_padding + 2 * 512  # q, k, v, out, lse


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_cached_decoding_step_equals_the_whole_sequence(backend):
    """Causal sliding attention one token at a time (a KV cache) gives the rows of the full pass."""
    q, k, v = (t.detach() for t in _qkv(1, 13))
    full, _ = sliding_window_attention(q, k, v, 4, causal=True, backend=backend)
    for t in range(13):
        step, _ = sliding_window_attention(q[:, :, t : t + 1], k[:, :, : t + 1], v[:, :, : t + 1], 4,
                                           causal=True,
                                           backend=backend)
        assert torch.allclose(step[:, :, 0], full[:, :, t], atol=TOL), t


def test_multi_head_attention_matches_full_attention_given_the_band_as_a_mask():
    """The module with attention='sliding_window' = the module with attention='full' and the dense band
    mask."""
    torch.manual_seed(0)
    sliding = MultiHeadAttention(16, 4, attention="sliding_window", window=3)
    full = MultiHeadAttention(16, 4, backend="math")
    full.load_state_dict(sliding.state_dict())
    x = torch.randn(2, 11, 16)
    padding = _key_mask(2, 11)[:, None, None, :]
    for causal in (False, True):
        out, weights = sliding(x, mask=padding, is_causal=causal, need_weights=True)
        expected, expected_weights = full(x, mask=band_mask(11, 11, 3, causal) & padding, need_weights=True)
        assert torch.allclose(out, expected, atol=TOL)
        assert torch.allclose(weights, expected_weights, atol=TOL)


def test_multi_head_attention_cache_decodes_like_the_whole_sequence():
    torch.manual_seed(0)
    attention = MultiHeadAttention(16, 4, attention="sliding_window", window=2).eval()
    x = torch.randn(1, 9, 16)
    full, _ = attention(x, is_causal=True)
    cache = KVCache()
    steps = [attention(x[:, t : t + 1], is_causal=True, cache=cache)[0] for t in range(9)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=TOL)


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(ValueError, match="window"):
        MultiHeadAttention(16, 4, attention="sliding_window")
    with pytest.raises(ValueError, match="attention must be"):
        MultiHeadAttention(16, 4, attention="sparse")
    attention = MultiHeadAttention(16, 4, attention="sliding_window", window=2)
    with pytest.raises(ValueError, match=r"key padding mask of shape \(B, 1, 1, S\)"):
        attention(torch.randn(1, 5, 16), mask=torch.ones(5, 5, dtype=torch.bool))
    q, k, v = _qkv(1, 4)
    with pytest.raises(ValueError, match="window must be >= 1"):
        sliding_window_attention(q, k, v, 0)


def test_the_unfused_kernel_path_gives_zeros_for_rows_without_a_real_key():
    """With attention dropout (or on CUDA) every block goes through F.scaled_dot_product_attention at once;
    rows whose window is all padding get zeros there too, and finite gradients."""
    from src.components.sliding_window_attention import attend_blocks

    q, k, v = _qkv(2, 17)
    key_mask = _key_mask(2, 17)
    blocks = banded_blocks(17, 3, key_mask, False, 2, torch.device("cpu"))
    out, _ = attend_blocks(blocks, q, k, v, "sdpa", dropout_p=1e-12, need_weights=False)  # ~no drops
    expected, _ = scaled_dot_product_attention(q, k, v, band_mask(17, 17, 3) & key_mask[:, None, None, :])
    assert torch.allclose(out, expected, atol=TOL)
    assert torch.equal(out[1, :, 12:], torch.zeros_like(out[1, :, 12:]))
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(out.sum(), (q, k, v)))
