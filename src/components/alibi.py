"""Attention with Linear Biases, ALiBi (Press et al. 2022, "Train Short, Test Long", Sec. 3).

No position is added to the embeddings. Instead each head h adds a fixed penalty, linear in the
distance between query i and key j, to its attention scores before the softmax:

    softmax(q_i K^T + m_h * [-(i-1), ..., -2, -1, 0])        (Sec. 3, Fig. 3)

i.e. the bias of key j for query i is -m_h (i - j). The slopes m_h form a geometric sequence
starting at 2^{-8/n} with ratio 2^{-8/n} for n heads (2^-1, 2^-2, ..., 2^-8 for 8 heads). For a
head count that is not a power of 2 the paper's reference code (``get_slopes`` in
github.com/ofirpress/attention_with_linear_biases) takes the slopes of the closest lower power of
2, n' = 2^floor(log2 n), and fills the remaining n - n' heads with every other slope of 2n' heads.

The bias depends on i - j only, so a model trained at length L sees nothing new at length 2L:
this is what lets ALiBi extrapolate (Sec. 4). Keys after the query (j > i) get a positive bias
here; a causal model masks them, and the paper defines ALiBi for causal language models only.

Letters: H heads, T queries, S keys.
"""

import math

import torch
from torch import Tensor


def _power_of_2_slopes(n: int) -> list[float]:
    start = 2 ** (-8 / n)  # 2^{-8/n}: the first slope and the ratio (Sec. 3)
    return [start ** (h + 1) for h in range(n)]


def alibi_slopes(n_heads: int) -> Tensor:
    """The head-specific slopes m_h (Sec. 3), with the reference code's rule for any head count.

    Shape:
        output: (H,).
    """
    if n_heads < 1:
        raise ValueError(f"ALiBi needs n_heads >= 1, got {n_heads}")
    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = _power_of_2_slopes(closest)
    slopes += _power_of_2_slopes(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes)


def alibi_bias(slopes: Tensor, query_len: int, key_len: int, device: torch.device | None = None) -> Tensor:
    """-m_h (i - j) for query positions i = S - T .. S - 1 (the last T of S, as when decoding with a cache).

    Shape:
        slopes: (H,) -> output: (H, T, S), float32.
    """
    start = key_len - query_len  # cached positions come before the T new queries
    query = torch.arange(start, key_len, device=device)[:, None]  # (T, 1)
    key = torch.arange(key_len, device=device)[None, :]  # (1, S)
    distance = (query - key).float()  # (T, S), i - j
    return -slopes.to(device)[:, None, None] * distance  # (H, 1, 1) * (T, S) -> (H, T, S)
