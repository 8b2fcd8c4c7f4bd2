"""Longformer attention equals its dense definition and Hugging Face's ``LongformerSelfAttention``.

Dense reference: the rows of ordinary tokens are full attention under the mask
"(inside the window and not global) or global", over real keys, through the local projections; the
rows of global tokens are full attention over every real key through the global projections.
"""

import itertools

import pytest
import torch

from src.components.attention import MultiHeadAttention, scaled_dot_product_attention
from src.components.longformer_attention import longformer_attention
from src.components.sliding_window_attention import band_mask

TOL = 1e-5


def _dense_reference(q, k, v, gq, gk, gv, global_index, window, key_mask):
    length = q.size(2)
    is_global = torch.zeros(length, dtype=torch.bool)
    is_global[global_index] = True
    # (T, T), global keys for every query
    allowed = (band_mask(length, length, window) & ~is_global) | is_global
    local, local_weights = scaled_dot_product_attention(q, k, v, allowed & key_mask[:, None, None, :])
    rows, row_weights = scaled_dot_product_attention(gq, gk, gv, key_mask[:, None, None, :])
    return (local.index_copy(2, global_index, rows), local_weights.index_copy(2, global_index, row_weights))


def _tensors(batch, length, heads=2, dim=8, n_global=2, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, requires_grad=True)

    q, k, v, gk, gv = (randn(batch, heads, length, dim) for _ in range(5))
    return q, k, v, randn(batch, heads, n_global, dim), gk, gv


def _largest_difference_to_dense(args: tuple, **kwargs) -> float:
    """Largest absolute difference between ``longformer_attention(*args, **kwargs)`` and the dense reference:
    the outputs, and the gradients of q, k, v, Q_g, K_g, V_g for one random output gradient."""
    expected, _ = _dense_reference(*args)
    out, _ = longformer_attention(*args, **kwargs)
    grad = torch.randn_like(expected)
    inputs = args[:6]
    diffs = [(out - expected).abs().max()] + [
        (a - b).abs().max() for a, b in zip(torch.autograd.grad(out, inputs, grad),
                                            torch.autograd.grad(expected, inputs, grad), strict=True)]
    return float(max(diffs))


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_equals_the_dense_reference_forward_and_backward(backend):
    for length, window in itertools.product([3, 8, 9, 17, 30], [1, 2, 4, 40]):
        global_index = torch.tensor([0, min(5, length - 1)]).unique()
        q, k, v, gq, gk, gv = _tensors(2, length, n_global=global_index.numel(), seed=length + window)
        key_mask = torch.ones(2, length, dtype=torch.bool)
        key_mask[1, max(2, length // 2):] = False
        args = (q, k, v, gq, gk, gv, global_index, window, key_mask)
        difference = _largest_difference_to_dense(args, backend=backend)
        assert difference <= TOL, f"length {length}, window {window}: {difference:.2e}"


def test_fused_path_over_many_blocks_equals_the_dense_reference():
    """The fused CPU path with several blocks (64 to 192 queries each): the band and the global keys are
    two kernel calls merged by their log-sum-exps, forward and backward; a padded sequence, a global
    position in the padding, and window 1 around two adjacent global tokens (rows whose band is empty)."""
    for length, window, positions in [(150, 1, [0, 1, 2, 140]), (301, 100, [0, 7, 299])]:
        global_index = torch.tensor(positions)
        q, k, v, gq, gk, gv = _tensors(2, length, n_global=len(positions), seed=length)
        key_mask = torch.ones(2, length, dtype=torch.bool)
        key_mask[1, length // 2:] = False
        args = (q, k, v, gq, gk, gv, global_index, window, key_mask)
        difference = _largest_difference_to_dense(args)
        assert difference <= TOL, f"length {length}, window {window}: {difference:.2e}"


def test_weights_for_heatmaps_equal_the_dense_reference():
    global_index = torch.tensor([0, 6])
    args = (*_tensors(2, 21), global_index, 3, torch.ones(2, 21, dtype=torch.bool))
    _, weights = longformer_attention(*args, need_weights=True)
    _, expected = _dense_reference(*args)
    assert weights.shape == (2, 2, 21, 21)
    assert torch.allclose(weights, expected, atol=TOL)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 2, 21), atol=TOL)
    assert (weights[:, :, :, 0] > 0).all() and (weights[:, :, 0, :] > 0).all()  # attends to / attended by all


def test_matches_hugging_face_longformer_self_attention():
    """Same weights in our module and in HF's layer, built from a small config (no download)."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

    torch.manual_seed(0)
    # HF: attention_window = 2 * window, length % (2 * window) == 0
    d_model, heads, window, length = 32, 4, 4, 24
    config = transformers.LongformerConfig(hidden_size=d_model, num_attention_heads=heads,
                                           attention_window=[2 * window], attention_probs_dropout_prob=0.0)
    theirs = LongformerSelfAttention(config, layer_id=0).eval()
    ours = MultiHeadAttention(d_model, heads, attention="longformer", window=window,
                              global_tokens=(0, 9)).eval()
    with torch.no_grad():
        ours.in_proj.weight.copy_(torch.cat([theirs.query.weight, theirs.key.weight, theirs.value.weight]))
        ours.in_proj.bias.copy_(torch.cat([theirs.query.bias, theirs.key.bias, theirs.value.bias]))
        ours.global_in_proj.weight.copy_(
            torch.cat([theirs.query_global.weight, theirs.key_global.weight, theirs.value_global.weight]))
        ours.global_in_proj.bias.copy_(
            torch.cat([theirs.query_global.bias, theirs.key_global.bias, theirs.value_global.bias]))
        ours.out_proj.weight.copy_(torch.eye(d_model))  # HF's self-attention stops before the output dense
        ours.out_proj.bias.zero_()

    x = torch.randn(2, length, d_model)
    real = torch.ones(2, length, dtype=torch.bool)
    real[1, 17:] = False
    # HF's mask after LongformerModel: negative = padding, 0 = local, positive = global
    hf_mask = torch.zeros(2, length)
    hf_mask[~real] = -10000.0
    hf_mask[:, [0, 9]] = 10000.0
    with torch.no_grad():
        (expected,) = theirs(x, attention_mask=hf_mask, is_index_masked=hf_mask < 0,
                             is_index_global_attn=hf_mask > 0, is_global_attn=True)
        out, _ = ours(x, mask=real[:, None, None, :])
    # HF zeroes the rows of padding queries; ours, like full attention, still computes them
    diff = (out - expected)[real].abs().max().item()
    assert diff <= TOL, f"max |ours - HF| over real tokens = {diff:.2e}"


def test_module_fused_path_equals_its_math_path_forward_and_gradients():
    """The module's fused CPU path computes the global rows through the inputs (W_k^T q against x, then
    W_v after the weighted sum) instead of projecting K_g, V_g of every token: same outputs, same
    gradients for x and every weight, over several blocks, with padding."""
    torch.manual_seed(0)
    fused = MultiHeadAttention(32, 4, attention="longformer", window=70, global_tokens=(0, 9, 250))
    reference = MultiHeadAttention(32, 4, attention="longformer", window=70, global_tokens=(0, 9, 250),
                                   backend="math")
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(2, 301, 32, requires_grad=True)
    real = torch.ones(2, 301, dtype=torch.bool)
    real[1, 200:] = False  # global token 250 is padding in the second sequence
    grad = torch.randn(2, 301, 32)
    results = []
    for module in (fused, reference):
        out, _ = module(x, mask=real[:, None, None, :])
        results.append([out, *torch.autograd.grad(out, [x, *module.parameters()], grad)])
    diff = max((a - b).abs().max().item() for a, b in zip(*results, strict=True))
    assert diff <= TOL, f"max |fused - math| over the output and every gradient = {diff:.2e}"


def test_global_positions_beyond_a_short_sequence_are_skipped():
    attention = MultiHeadAttention(16, 2, attention="longformer", window=2, global_tokens=(0, 50))
    out, weights = attention(torch.randn(1, 7, 16), need_weights=True)
    assert out.shape == (1, 7, 16) and torch.isfinite(out).all()
    assert (weights[0, :, :, 0] > 0).all()


def test_longformer_refuses_causal_attention_and_caches():
    attention = MultiHeadAttention(16, 2, attention="longformer", window=2)
    with pytest.raises(ValueError, match="bidirectional"):
        attention(torch.randn(1, 5, 16), is_causal=True)


def test_global_tokens_must_be_distinct_and_a_refused_cache_stays_untouched():
    from src.components.kv_cache import KVCache
    from src.config.model import ModelConfig

    with pytest.raises(ValueError, match="distinct"):
        MultiHeadAttention(16, 2, attention="longformer", window=2, global_tokens=(0, 0))
    with pytest.raises(ValueError, match="distinct positions below max_positions"):
        ModelConfig(family="encoder_classifier", attention="longformer", window=2, global_tokens=(0, 0))
    with pytest.raises(ValueError, match="distinct positions below max_positions"):
        ModelConfig(family="encoder_classifier", attention="longformer", window=2, global_tokens=(0, 300))
    cache = KVCache()
    with pytest.raises(ValueError, match="no causal mask and no cache"):
        MultiHeadAttention(16, 2, attention="longformer", window=2)(torch.randn(1, 5, 16), cache=cache)
    assert cache.key is None
