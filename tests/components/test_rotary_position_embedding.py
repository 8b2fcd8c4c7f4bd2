"""RoPE (Su et al. 2021) against its equations, against Hugging Face Llama, and inside attention."""

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from src.components.attention import MultiHeadAttention
from src.components.kv_cache import KVCache
from src.components.rotary_position_embedding import RotaryPositionEmbedding


def _sizes(seed: int) -> tuple[int, int, int, int, int]:
    """Random (B, H, T, D, start): odd T and odd starts come up."""
    g = torch.Generator().manual_seed(seed)
    batch, heads, length = (int(torch.randint(lo, hi, (1,), generator=g))
                            for lo, hi in ((1, 4), (1, 5), (1, 12)))
    head_dim = 2 * int(torch.randint(1, 9, (1,), generator=g))
    return batch, heads, length, head_dim, int(torch.randint(0, 30, (1,), generator=g))


def _complex_form(x: torch.Tensor, start: int, base: float = 10000.0) -> torch.Tensor:
    """RoFormer Eq. 12: the pair (x_i, x_{i+D/2}) as x_i + i x_{i+D/2}, times e^{i m θ_i} (Eq. 15's θ_i)."""
    half = x.size(-1) // 2
    theta = torch.tensor([base ** (-2 * i / x.size(-1)) for i in range(half)], dtype=torch.float64)
    m = torch.arange(start, start + x.size(-2), dtype=torch.float64)[:, None]
    z = torch.complex(x[..., :half], x[..., half:]) * torch.polar(torch.ones_like(m * theta), m * theta)
    return torch.cat([z.real, z.imag], dim=-1)


@pytest.mark.parametrize("seed", range(4))
def test_rotation_is_the_complex_form_with_its_gradients(seed):
    batch, heads, length, head_dim, start = _sizes(seed)
    rope = RotaryPositionEmbedding(head_dim, 64).double()
    rope.cos, rope.sin = _exact_tables(64, head_dim)  # float64 tables: compare the rotation, not the rounding
    x = torch.randn(batch, heads, length, head_dim, dtype=torch.float64, requires_grad=True)
    ours, expected = rope(x, start), _complex_form(x, start)
    torch.testing.assert_close(ours, expected, atol=1e-12, rtol=0)
    upstream = torch.randn_like(ours)
    (grad,) = torch.autograd.grad(ours, x, upstream)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    torch.testing.assert_close(grad, expected_grad, atol=1e-12, rtol=0)


def _exact_tables(max_positions: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    angles = torch.arange(max_positions, dtype=torch.float64)[:, None] * torch.tensor(
        [10000.0 ** (-2 * i / head_dim) for i in range(head_dim // 2)], dtype=torch.float64)
    return angles.cos(), angles.sin()


def test_float32_tables_are_within_rounding_of_the_exact_rotation():
    rope = RotaryPositionEmbedding(16, 64)
    x = torch.randn(2, 3, 9, 16, dtype=torch.float64)
    torch.testing.assert_close(rope(x.float(), 50).double(), _complex_form(x, 50), atol=1e-5, rtol=0)


def test_adjacent_pairs_of_eq_34_are_the_same_rotation_with_dimensions_permuted():
    """Eq. 34 pairs (x_1, x_2), (x_3, x_4), ...; we pair halves. A permutation maps one onto the other."""
    head_dim, length, start = 8, 5, 3
    x = torch.randn(2, length, head_dim, dtype=torch.float64)
    m = torch.arange(start, start + length, dtype=torch.float64)[:, None]
    theta = torch.tensor([10000.0 ** (-2 * i / head_dim) for i in range(head_dim // 2)], dtype=torch.float64)
    cos, sin = (m * theta).cos().repeat_interleave(2, -1), (m * theta).sin().repeat_interleave(2, -1)
    rotated = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)  # (-x2, x1, -x4, x3, ...)
    eq34 = x * cos + rotated * sin
    halves = [*range(0, head_dim, 2), *range(1, head_dim, 2)]  # (x1, x3, ..., x2, x4, ...)
    rope = RotaryPositionEmbedding(head_dim, 16).double()
    rope.cos, rope.sin = _exact_tables(16, head_dim)
    torch.testing.assert_close(rope(x[..., halves], start), eq34[..., halves], atol=1e-12, rtol=0)


@pytest.mark.parametrize("seed", range(3))
def test_matches_hugging_face_llama(seed):
    batch, heads, length, head_dim, start = _sizes(seed)
    config = LlamaConfig(hidden_size=heads * head_dim, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=64)
    hf = LlamaRotaryEmbedding(config)
    q, k = torch.randn(batch, heads, length, head_dim), torch.randn(batch, heads, length, head_dim)
    cos, sin = hf(q, torch.arange(start, start + length)[None].expand(batch, length))
    expected_q, expected_k = apply_rotary_pos_emb(q, k, cos, sin)
    rope = RotaryPositionEmbedding(head_dim, 64)
    torch.testing.assert_close(rope(q, start), expected_q, atol=1e-5, rtol=0)
    torch.testing.assert_close(rope(k, start), expected_k, atol=1e-5, rtol=0)


def test_scores_depend_only_on_relative_position():
    """<R_m q, R_n k> = <R_{m+s} q, R_{n+s} k> for every shift s (Eq. 16), and it changes with m - n."""
    torch.manual_seed(0)
    head_dim = 16
    rope = RotaryPositionEmbedding(head_dim, 512).double()
    rope.cos, rope.sin = _exact_tables(512, head_dim)  # float32 tables would round at ~1e-8
    q, k = torch.randn(head_dim, dtype=torch.float64), torch.randn(head_dim, dtype=torch.float64)

    def score(m: int, n: int) -> float:
        return float(rope(q[None, None], m)[0, 0] @ rope(k[None, None], n)[0, 0])

    for m, n in ((5, 2), (2, 5), (7, 7), (40, 1)):
        base_score = score(m, n)
        for shift in (1, 13, 100, 400):
            assert score(m + shift, n + shift) == pytest.approx(base_score, abs=1e-9)
    assert abs(score(5, 2) - score(5, 3)) > 1e-3  # not position-blind: the distance matters
    assert abs(score(5, 2) - score(2, 5)) > 1e-3  # nor symmetric: the sign of m - n matters


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("seed", range(3))
def test_cached_decoding_equals_uncached_and_the_cache_holds_rotated_keys(backend, seed):
    torch.manual_seed(seed)
    heads, head_dim = 2 + seed, 4
    length, prompt = 7 + 2 * seed, 3 + seed  # odd lengths, a prompt of several tokens then single steps
    attention = MultiHeadAttention(heads * head_dim, heads, backend=backend,
                                   rotary=RotaryPositionEmbedding(head_dim, 32)).eval()
    x = torch.randn(2, length, heads * head_dim)
    full, _ = attention(x, is_causal=True)
    cache = KVCache()
    outputs = [attention(x[:, :prompt], is_causal=True, cache=cache)[0]]
    outputs += [attention(x[:, t : t + 1], is_causal=True, cache=cache)[0] for t in range(prompt, length)]
    torch.testing.assert_close(torch.cat(outputs, dim=1), full, atol=1e-5, rtol=0)
    raw_keys = attention.in_proj(x)[..., heads * head_dim : 2 * heads * head_dim]
    raw_keys = raw_keys.view(2, length, heads, head_dim).transpose(1, 2)  # (B, T, C) -> (B, H, T, D)
    torch.testing.assert_close(cache.key, attention.rotary(raw_keys, 0), atol=1e-6, rtol=0)
    assert not torch.allclose(cache.key[:, :, 1:], raw_keys[:, :, 1:], atol=1e-3)


def test_cross_attention_is_not_rotated():
    """Memory positions belong to another sequence: RoPE applies to self-attention only."""
    torch.manual_seed(0)
    plain = MultiHeadAttention(8, 2)
    rotary = MultiHeadAttention(8, 2, rotary=RotaryPositionEmbedding(4, 16))
    rotary.load_state_dict(plain.state_dict())
    x, memory = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    torch.testing.assert_close(rotary(x, memory)[0], plain(x, memory)[0])
    assert not torch.allclose(rotary(x, is_causal=True)[0], plain(x, is_causal=True)[0], atol=1e-4)


def test_refusals_name_expected_and_actual():
    with pytest.raises(ValueError, match=r"head_dim must be even, got 5"):
        RotaryPositionEmbedding(5, 16)
    with pytest.raises(ValueError, match=r"max_positions=16.*start=10, length=7"):
        RotaryPositionEmbedding(4, 16)(torch.zeros(1, 1, 7, 4), 10)
    with pytest.raises(ValueError, match=r"head_dim=8 does not fit heads of d_model/n_heads = 4"):
        MultiHeadAttention(8, 2, rotary=RotaryPositionEmbedding(8, 16))
