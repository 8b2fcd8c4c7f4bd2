"""ALiBi (Press et al. 2022): the paper's slopes and bias, and attention with it on both backends."""

import math

import pytest
import torch

from src.components.alibi import alibi_bias, alibi_slopes
from src.components.attention import MultiHeadAttention
from src.components.kv_cache import KVCache
from src.components.masks import padding_mask
from src.components.rotary_position_embedding import RotaryPositionEmbedding


def _reference_get_slopes(n: int) -> list[float]:
    """``get_slopes`` of the paper's code, as written there.

    github.com/ofirpress/attention_with_linear_biases, fairseq/models/transformer.py.
    """

    def get_slopes_power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        ratio = start
        return [start * ratio**i for i in range(n)]

    if math.log2(n).is_integer():
        return get_slopes_power_of_2(n)
    closest_power_of_2 = 2 ** math.floor(math.log2(n))
    return get_slopes_power_of_2(closest_power_of_2) + _reference_get_slopes(2 * closest_power_of_2)[0::2][
        : n - closest_power_of_2
    ]


@pytest.mark.parametrize("n_heads", [1, 2, 3, 5, 6, 8, 12, 16, 20])
def test_slopes_are_the_papers_including_non_powers_of_two(n_heads):
    torch.testing.assert_close(alibi_slopes(n_heads), torch.tensor(_reference_get_slopes(n_heads)))


def test_eight_heads_get_the_sequence_of_section_3():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -h for h in range(1, 9)]))


def test_bias_is_minus_slope_times_distance_for_the_last_queries():
    slopes, query_len, key_len = alibi_slopes(3), 2, 5  # two new queries after three cached keys
    bias = alibi_bias(slopes, query_len, key_len)
    assert bias.shape == (3, query_len, key_len)
    for h in range(3):
        for t in range(query_len):
            i = key_len - query_len + t
            for j in range(key_len):
                assert float(bias[h, t, j]) == pytest.approx(-float(slopes[h]) * (i - j))


def _reference_attention(attention: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax(q_i K^T / sqrt(D) + m_h [-(i-1), ..., -1, 0]) V, causal, head by head (Sec. 3)."""
    batch, length, width = x.shape
    heads, dim = attention.n_heads, attention.head_dim
    q, k, v = attention.in_proj(x).split(width, dim=-1)
    slopes = torch.tensor(_reference_get_slopes(heads))
    outputs = []
    for h in range(heads):
        qh, kh, vh = (t[..., h * dim : (h + 1) * dim] for t in (q, k, v))
        scores = qh @ kh.transpose(1, 2) / math.sqrt(dim)  # (B, T, T)
        distance = torch.arange(length)[:, None] - torch.arange(length)[None, :]
        scores = scores - slopes[h] * distance
        scores = scores.masked_fill(distance < 0, float("-inf"))
        outputs.append(scores.softmax(-1) @ vh)
    return attention.out_proj(torch.cat(outputs, dim=-1))


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("heads", [3, 4])
def test_attention_with_alibi_matches_the_equation_with_gradients(backend, heads):
    torch.manual_seed(heads)
    attention = MultiHeadAttention(heads * 4, heads, backend=backend, alibi=True)
    x = torch.randn(2, 7, heads * 4, requires_grad=True)
    out, _ = attention(x, is_causal=True)
    expected = _reference_attention(attention, x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    upstream = torch.randn_like(out)
    params = [x, *attention.parameters()]
    for grad, expected_grad in zip(torch.autograd.grad(out, params, upstream),
                                   torch.autograd.grad(expected, params, upstream), strict=True):
        torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("seed", range(3))
def test_cached_decoding_equals_uncached(backend, seed):
    torch.manual_seed(seed)
    heads, length, prompt = 3 + seed, 5 + 2 * seed, 1 + seed
    attention = MultiHeadAttention(heads * 2, heads, backend=backend, alibi=True).eval()
    x = torch.randn(2, length, heads * 2)
    full, _ = attention(x, is_causal=True)
    cache = KVCache()
    steps = [attention(x[:, :prompt], is_causal=True, cache=cache)[0]]
    steps += [attention(x[:, t : t + 1], is_causal=True, cache=cache)[0] for t in range(prompt, length)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_bias_changes_the_output_and_padding_only_rows_stay_zero_on_both_backends():
    torch.manual_seed(0)
    plain, sdpa = MultiHeadAttention(8, 2), MultiHeadAttention(8, 2, alibi=True)
    math_ = MultiHeadAttention(8, 2, backend="math", alibi=True)
    sdpa.load_state_dict(plain.state_dict())
    math_.load_state_dict(plain.state_dict())
    x = torch.randn(2, 5, 8)
    assert not torch.allclose(sdpa(x, is_causal=True)[0], plain(x, is_causal=True)[0], atol=1e-4)
    mask = padding_mask(torch.tensor([[1] * 5, [0] * 5]), pad_id=0)  # the second row is all padding
    a, b = sdpa(x, mask=mask, is_causal=True)[0], math_(x, mask=mask, is_causal=True)[0]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(a[1], plain.out_proj.bias.expand(5, 8))  # zero attention, then out_proj


def test_alibi_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match=r"attention='sliding_window' builds its own band"):
        MultiHeadAttention(8, 2, attention="sliding_window", window=2, alibi=True)
    with pytest.raises(ValueError, match=r"choose one"):
        MultiHeadAttention(8, 2, alibi=True, rotary=RotaryPositionEmbedding(4, 8))
    with pytest.raises(ValueError, match=r"n_heads >= 1, got 0"):
        alibi_slopes(0)
