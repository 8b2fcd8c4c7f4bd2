import pytest
import torch
from torch import nn

from src.components.attention import MultiHeadAttention
from src.components.kv_cache import KVCache
from src.components.masks import causal_mask, padding_mask, to_torch_mask

B, T, S, C, H = 3, 5, 7, 16, 4


def _pair(backend: str) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    torch.manual_seed(0)
    ours = MultiHeadAttention(C, H, backend=backend)
    theirs = nn.MultiheadAttention(C, H, batch_first=True)
    nn.init.normal_(theirs.in_proj_bias)
    with torch.no_grad():
        ours.in_proj.weight.copy_(theirs.in_proj_weight)
        ours.in_proj.bias.copy_(theirs.in_proj_bias)
        ours.out_proj.load_state_dict(theirs.out_proj.state_dict())
    return ours, theirs


def _source_mask() -> torch.Tensor:
    tokens = torch.ones(B, S, dtype=torch.long)
    tokens[0, 4:] = 0
    tokens[2, 1:] = 0
    return padding_mask(tokens, pad_id=0)  # (B, 1, 1, S)


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_self_attention_with_key_padding_matches_torch(backend):
    ours, theirs = _pair(backend)
    x = torch.randn(B, S, C, requires_grad=True)
    mask = _source_mask()
    out, weights = ours(x, mask=mask, need_weights=True)
    expected, expected_weights = theirs(
        x, x, x, key_padding_mask=to_torch_mask(mask), average_attn_weights=False
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=0)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_causal_self_attention_matches_torch(backend):
    ours, theirs = _pair(backend)
    x = torch.randn(B, T, C)
    out, _ = ours(x, is_causal=True)
    expected, _ = theirs(x, x, x, attn_mask=to_torch_mask(causal_mask(T, T)), need_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_cross_attention_with_key_padding_matches_torch(backend):
    ours, theirs = _pair(backend)
    x, memory, mask = torch.randn(B, T, C), torch.randn(B, S, C), _source_mask()
    out, _ = ours(x, memory, mask=mask)
    expected, _ = theirs(x, memory, memory, key_padding_mask=to_torch_mask(mask), need_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_backends_agree_on_outputs_and_gradients():
    sdpa, _ = _pair("sdpa")
    math_ = MultiHeadAttention(C, H, backend="math")
    math_.load_state_dict(sdpa.state_dict())
    x, memory = torch.randn(B, T, C, requires_grad=True), torch.randn(B, S, C)
    target_mask = padding_mask(torch.tensor([[1] * T, [1] * (T - 2) + [0] * 2, [1] + [0] * (T - 1)]), 0)
    for kwargs in (
        {"is_causal": True},
        {"is_causal": True, "mask": target_mask},
        {"memory": memory, "mask": _source_mask()},
    ):
        a, _ = sdpa(x, **kwargs)
        b, _ = math_(x, **kwargs)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        grads = [torch.autograd.grad(out.square().sum(), x)[0] for out in (a, b)]
        torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=0)


def test_weights_are_materialised_only_when_asked():
    attention, _ = _pair("sdpa")
    x = torch.randn(B, T, C)
    assert attention(x)[1] is None
    _, weights = attention(x, is_causal=True, need_weights=True)
    assert weights.shape == (B, H, T, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, T))
    assert (weights.triu(diagonal=1) == 0).all()  # the causal mask holds on the weights path too


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fully_masked_rows_give_zeros_not_nan(backend, dtype):
    attention = MultiHeadAttention(C, H, backend=backend).to(dtype)
    x = torch.randn(2, S, C, dtype=dtype)
    mask = padding_mask(torch.tensor([[1] * S, [0] * S]), pad_id=0)  # the second source is all padding
    out, _ = attention(x, mask=mask)
    assert torch.isfinite(out).all()
    expected = attention.out_proj.bias.expand(S, C)  # zero attention output, then the output projection
    torch.testing.assert_close(out[1], expected)


def test_cached_steps_equal_full_causal_attention():
    attention, _ = _pair("sdpa")
    x = torch.randn(B, T, C)
    full, _ = attention(x, is_causal=True)
    cache = KVCache()
    steps = [attention(x[:, t : t + 1], is_causal=True, cache=cache)[0] for t in range(T)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-6, rtol=0)
    assert len(cache) == T


def test_cache_grows_past_its_first_capacity_and_reorders_rows():
    cache = KVCache()
    chunks = [torch.randn(2, H, n, C // H) for n in (1, 1, 3, 1)]
    for chunk in chunks:
        key, value = cache.append(chunk, -chunk)
    torch.testing.assert_close(key, torch.cat(chunks, dim=2))
    torch.testing.assert_close(value, -key)
    cache.reorder(torch.tensor([1, 1]))
    torch.testing.assert_close(cache.key, torch.cat(chunks, dim=2)[[1, 1]])


def test_cross_attention_cache_is_computed_once():
    attention, _ = _pair("sdpa")
    memory, cache = torch.randn(B, S, C), KVCache()
    attention(torch.randn(B, 1, C), memory, cache=cache)
    key = cache.key.clone()
    attention(torch.randn(B, 1, C), torch.zeros(B, S, C), cache=cache)  # memory is ignored once cached
    assert torch.equal(cache.key, key) and len(cache) == S


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match=r"d_model=10 is not divisible by n_heads=4"):
        MultiHeadAttention(10, 4)


def test_mask_of_wrong_shape_names_expected_and_actual():
    attention = MultiHeadAttention(C, H)
    x = torch.randn(B, T, C)
    with pytest.raises(ValueError, match=r"\(3, 6\).*\(B, H, T, S\) = \(3, 4, 5, 5\)"):
        attention(x, mask=torch.ones(B, T + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"torch\.bool.*torch\.float32"):
        attention(x, mask=torch.ones(B, 1, 1, T))
