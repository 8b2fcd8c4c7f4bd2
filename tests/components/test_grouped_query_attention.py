"""Grouped-query and multi-query attention (Ainslie et al. 2023): equation, Llama, cache and its bytes."""

import math

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding

from src.components.attention import MultiHeadAttention
from src.components.kv_cache import KVCache
from src.components.rotary_position_embedding import RotaryPositionEmbedding


def _sizes(seed: int) -> tuple[int, int, int, int, int]:
    """Random (B, H, G, D, T) with G dividing H, odd T included."""
    g = torch.Generator().manual_seed(seed)
    heads = int(torch.randint(1, 4, (1,), generator=g)) * 2
    divisors = [d for d in range(1, heads + 1) if heads % d == 0]
    groups = divisors[int(torch.randint(0, 2, (1,), generator=g))]
    batch, length = int(torch.randint(1, 4, (1,), generator=g)), int(torch.randint(1, 10, (1,), generator=g))
    return batch, heads, groups, 2 * int(torch.randint(1, 5, (1,), generator=g)), length


def _reference(attention: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """Sec. 2.2: query head h attends with key/value head h // (H/G) of its group; causal; concat; W^O."""
    heads, groups, dim = attention.n_heads, attention.n_kv_heads, attention.head_dim
    q, k, v = attention.in_proj(x).split([heads * dim, groups * dim, groups * dim], dim=-1)
    causal = torch.ones(x.size(1), x.size(1), dtype=torch.bool).tril()
    outputs = []
    for h in range(heads):
        g = h // (heads // groups)
        qh = q[..., h * dim : (h + 1) * dim]
        kh, vh = k[..., g * dim : (g + 1) * dim], v[..., g * dim : (g + 1) * dim]
        scores = (qh @ kh.transpose(1, 2) / math.sqrt(dim)).masked_fill(~causal, float("-inf"))
        outputs.append(scores.softmax(-1) @ vh)
    return attention.out_proj(torch.cat(outputs, dim=-1))


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("seed", range(4))
def test_matches_the_grouped_equation_with_gradients(backend, seed):
    batch, heads, groups, dim, length = _sizes(seed)
    torch.manual_seed(seed)
    attention = MultiHeadAttention(heads * dim, heads, backend=backend, n_kv_heads=groups)
    assert attention.in_proj.weight.shape == ((heads + 2 * groups) * dim, heads * dim)
    x = torch.randn(batch, length, heads * dim, requires_grad=True)
    out, _ = attention(x, is_causal=True)
    expected = _reference(attention, x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    upstream, params = torch.randn_like(out), [x, *attention.parameters()]
    for grad, expected_grad in zip(torch.autograd.grad(out, params, upstream),
                                   torch.autograd.grad(expected, params, upstream), strict=True):
        torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=0)


def _llama_pair(heads: int, groups: int, dim: int,
                backend: str) -> tuple[MultiHeadAttention, LlamaAttention, LlamaConfig]:
    config = LlamaConfig(hidden_size=heads * dim, num_attention_heads=heads, num_key_value_heads=groups,
                         max_position_embeddings=32, attention_bias=False)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    theirs = LlamaAttention(config, layer_idx=0)
    ours = MultiHeadAttention(heads * dim, heads, backend=backend, n_kv_heads=groups, bias=False,
                              rotary=RotaryPositionEmbedding(dim, 32))
    with torch.no_grad():
        projections = (theirs.q_proj, theirs.k_proj, theirs.v_proj)
        ours.in_proj.weight.copy_(torch.cat([p.weight for p in projections]))
        ours.out_proj.weight.copy_(theirs.o_proj.weight)
    return ours, theirs, config


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize(("heads", "groups"), [(4, 4), (4, 2), (6, 1)], ids=["mha", "gqa", "mqa"])
def test_rotary_grouped_attention_matches_hugging_face_llama(backend, heads, groups):
    ours, theirs, config = _llama_pair(heads, groups, 4, backend)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    x = torch.randn(2, 9, heads * 4, requires_grad=True)
    position_embeddings = LlamaRotaryEmbedding(config)(x, torch.arange(9)[None].expand(2, 9))
    causal = torch.full((9, 9), float("-inf")).triu(1)[None, None]  # HF's additive mask, (1, 1, T, T)
    expected, _ = theirs(x, position_embeddings=position_embeddings, attention_mask=causal)
    out, _ = ours(x, is_causal=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, upstream)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("seed", range(4))
def test_cached_decoding_equals_uncached_and_the_cache_keeps_only_the_shared_heads(backend, seed):
    batch, heads, groups, dim, length = _sizes(seed)
    length += 2  # a prompt of two tokens, then at least one step
    torch.manual_seed(seed)
    attention = MultiHeadAttention(heads * dim, heads, backend=backend, n_kv_heads=groups,
                                   rotary=RotaryPositionEmbedding(dim, 32)).eval()
    x = torch.randn(batch, length, heads * dim)
    full, _ = attention(x, is_causal=True)
    cache = KVCache()
    steps = [attention(x[:, :2], is_causal=True, cache=cache)[0]]
    steps += [attention(x[:, t : t + 1], is_causal=True, cache=cache)[0] for t in range(2, length)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    assert cache.key.shape == cache.value.shape == (batch, groups, length, dim)


def _cache_bytes_per_token(heads: int, groups: int, width: int = 64, length: int = 12) -> float:
    attention = MultiHeadAttention(width, heads, n_kv_heads=groups).eval()
    cache = KVCache()
    with torch.no_grad():
        attention(torch.randn(1, length, width), is_causal=True, cache=cache)
    return cache.nbytes / length


def test_cache_bytes_per_token_of_mha_gqa_and_mqa():
    """Measured on a filled cache: 2 (K and V) x G heads x D x 4 bytes; GQA divides MHA's by H/G."""
    heads, dim = 8, 8
    kinds = (("mha", 8), ("gqa", 2), ("mqa", 1))
    measured = {name: _cache_bytes_per_token(heads, groups) for name, groups in kinds}
    assert measured == {"mha": 2 * 8 * dim * 4, "gqa": 2 * 2 * dim * 4, "mqa": 2 * 1 * dim * 4}
    assert measured["mha"] / measured["gqa"] == heads / 2 and measured["mha"] / measured["mqa"] == heads


def test_cross_attention_caches_the_shared_heads_of_memory():
    torch.manual_seed(0)
    attention = MultiHeadAttention(12, 6, n_kv_heads=3)
    memory, cache = torch.randn(2, 5, 12), KVCache()
    out, _ = attention(torch.randn(2, 1, 12), memory, cache=cache)
    assert out.shape == (2, 1, 12) and cache.key.shape == (2, 3, 5, 2)


def test_heads_that_do_not_divide_are_refused():
    with pytest.raises(ValueError, match=r"n_kv_heads=3 must divide n_heads=4 .*remainder 1"):
        MultiHeadAttention(16, 4, n_kv_heads=3)
    with pytest.raises(ValueError, match=r"n_kv_heads=0 must divide n_heads=4"):
        MultiHeadAttention(16, 4, n_kv_heads=0)


@pytest.mark.parametrize("pattern", [{}, {"attention": "sliding_window", "window": 2}],
                         ids=["full", "sliding"])
def test_equals_multi_head_attention_with_each_shared_head_copied_into_its_group(pattern):
    """GQA is MHA whose key/value projections are tied within each group (Sec. 2.2), on every pattern."""
    torch.manual_seed(0)
    heads, groups, dim = 6, 2, 3
    grouped = MultiHeadAttention(heads * dim, heads, n_kv_heads=groups, **pattern)
    full = MultiHeadAttention(heads * dim, heads, **pattern)
    q, k, v = grouped.in_proj.weight.split([heads * dim, groups * dim, groups * dim])
    q_bias, k_bias, v_bias = grouped.in_proj.bias.split([heads * dim, groups * dim, groups * dim])

    # (G*D, ...) -> (H*D, ...): group g's rows for its H/G heads
    def copied(rows: torch.Tensor) -> torch.Tensor:
        return rows.unflatten(0, (groups, dim)).repeat_interleave(heads // groups, dim=0).flatten(0, 1)

    with torch.no_grad():
        full.in_proj.weight.copy_(torch.cat([q, copied(k), copied(v)]))
        full.in_proj.bias.copy_(torch.cat([q_bias, copied(k_bias), copied(v_bias)]))
        full.out_proj.load_state_dict(grouped.out_proj.state_dict())
    x = torch.randn(2, 7, heads * dim)
    torch.testing.assert_close(grouped(x, is_causal=True)[0], full(x, is_causal=True)[0], atol=1e-6, rtol=0)
