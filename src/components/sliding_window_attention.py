"""Sliding-window (local, banded) attention in O(n w) time and memory.

Full self-attention scores every pair of n tokens: O(n^2) time and, for the explicit computation,
O(n^2) memory. Local attention lets each token see only the ``window`` tokens on each side of it,
``|i - j| <= w``, or with ``causal`` the ``w`` tokens before it, ``0 <= i - j <= w``:

- Child et al. 2019, "Generating Long Sequences with Sparse Transformers", Sec. 4.2: the "local"
  half of factorized attention, each position attending to a band of nearby positions;
- Beltagy et al. 2020, "Longformer: The Long-Document Transformer", Sec. 3.1 "Sliding Window":
  "each token attends to 1/2 w tokens on each side" (their w is our ``2 * window``, Hugging Face's
  ``attention_window``); stacking l layers gives a receptive field of l x w.

**How the band is computed without the n x n matrix** (the blocked "look-around" of Longformer's
``sliding_chunks`` and of lucidrains' ``local-attention``): cut the sequence into blocks of
``b = window`` queries. Every key that a query of block k may see lies in blocks k-1, k and k+1
(k-1 and k for causal attention), so each block attends to its own 3b keys (2b causal): n/b blocks
x b queries x 3b keys = 3 n w scores instead of n^2. Inside a block the band is the same (b, 3b)
pattern for every block; keys outside the sequence (before the first block, after the last) and
padding keys are masked out by the key mask. A sequence no longer than ``window + 1`` is one block
with no look-around: there the band is the whole matrix.

Two backends, as for full attention (``src/components/attention.py``):
- ``"sdpa"``: ``F.scaled_dot_product_attention`` once over all blocks at once (blocks folded into
  the batch), so PyTorch's fused kernel computes every block without materialising its weights;
- ``"math"``: ``scaled_dot_product_attention`` (Eq. 1 written out) on the blocked tensors, which
  also returns the weights. ``need_weights=True`` always takes it and scatters the band back into
  a (T, S) matrix for the heatmaps; that dense matrix is for inspection only.

Masks follow ``src/components/masks.py``: boolean, True = may attend. A query whose window holds
no real key (e.g. padding beyond the end of a short text) gets an output of zeros, as in full attention.
``band_mask`` is the dense reference the tests compare against; it is never the implementation.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Backend = Literal["sdpa", "math"]


def band_mask(query_len: int, key_len: int, window: int, causal: bool = False,
              device: torch.device | None = None) -> Tensor:
    """The dense (T, S) band: True where query i may see key j.

    Queries are the last ``query_len`` of ``key_len`` positions (aligned bottom-right, as
    ``masks.causal_mask``), so the same mask serves a whole sequence and a cached decoding step.

    Shape:
        output: (T, S) boolean.
    """
    query_pos = torch.arange(key_len - query_len, key_len, device=device)[:, None]  # (T, 1)
    offset = query_pos - torch.arange(key_len, device=device)[None, :]  # i - j, (T, S)
    return (offset <= window) & (offset >= (0 if causal else -window))


def sliding_window_attention(
    query: Tensor, key: Tensor, value: Tensor, window: int, key_mask: Tensor | None = None,
    causal: bool = False, backend: Backend = "sdpa", dropout_p: float = 0.0, need_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Each query attends to the keys within ``window`` positions of it (causal: before it).

    Args:
        query, key, value: per-head projections.
        window: one-sided window w >= 1.
        key_mask: True at real keys, False at padding; ``None``: all real.
        causal: look only backwards (decoder self-attention).
        backend: "sdpa" (fused kernel per block) or "math" (explicit, can return weights).
        dropout_p: dropout on the attention weights.
        need_weights: also return the weights as a dense (B, H, T, S) matrix (for heatmaps).

    Shape:
        query: (B, H, T, D); key, value: (B, H, S, D) with S >= T (S > T: a cached decoding step,
        the queries being the last T positions); key_mask: (B, S).
        output: (B, H, T, D); weights: (B, H, T, S) or None.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1 (keys seen on each side), got {window}")
    query_len, key_len = query.size(2), key.size(2)
    if key_len != query_len:  # a cached decoding step: a few new queries against every key so far
        return _decoding_step(query, key, value, window, key_mask, causal, backend, dropout_p, need_weights)
    blocks = banded_blocks(query, key, value, window, key_mask, causal)
    out, weights = attend_blocks(blocks, backend, dropout_p, need_weights)
    return out, (blocks.dense_weights(weights) if need_weights else None)


class BandedBlocks:
    """Queries cut into blocks of ``size``, each with the keys/values of the blocks around it.

    The blocks sit next to the batch dimension, so that the fused kernel sees them as a batch.

    Attributes:
        query: (B, N, H, b, D): N blocks of b queries, the last block padded with zeros.
        key, value: (B, N, H, K, D): K = (back + 1 + ahead) * b keys per block, then the ``E`` extra
            keys given to ``append_keys`` (Longformer's global keys).
        mask: (B, N, 1, b, K [+ E]) boolean, True = may attend; the same for every head.
    """

    def __init__(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor, size: int, back: int,
                 length: int) -> None:
        self.query, self.key, self.value, self.mask = query, key, value, mask
        self.size, self.back, self.length = size, back, length

    def append_keys(self, key: Tensor, value: Tensor, key_mask: Tensor) -> None:
        """Let every query see ``key`` as well (after its window), where ``key_mask`` allows.

        Shape: key, value: (B, H, E, D); key_mask: (B, E).
        """
        n_blocks = self.query.size(1)
        self.key = torch.cat([self.key, key.unsqueeze(1).expand(-1, n_blocks, -1, -1, -1)], dim=3)
        self.value = torch.cat([self.value, value.unsqueeze(1).expand(-1, n_blocks, -1, -1, -1)], dim=3)
        extra = key_mask[:, None, None, None, :].expand(-1, n_blocks, 1, self.size, -1)  # (B, N, 1, b, E)
        self.mask = torch.cat([self.mask, extra], dim=-1)

    def unblock(self, out: Tensor) -> Tensor:
        """(B, N, H, b, D) block outputs -> (B, H, T, D), dropping the padding queries."""
        batch, n_blocks, heads, size, dim = out.shape
        return out.transpose(1, 2).reshape(batch, heads, n_blocks * size, dim)[:, :, : self.length]

    def dense_weights(self, weights: Tensor, extra_index: Tensor | None = None) -> Tensor:
        """Scatter block weights (B, N, H, b, K [+ E]) into the (B, H, T, T) matrix they stand for.

        ``extra_index`` (E,) gives the sequence position of each appended key. For heatmaps only.
        """
        weights = weights.transpose(1, 2)  # (B, H, N, b, K [+ E])
        batch, heads, n_blocks, size, _ = weights.shape
        window_keys = self.mask.size(-1) - (0 if extra_index is None else extra_index.numel())
        padded_len = (n_blocks - 1) * size + window_keys  # the last block's last key, plus one
        # block k's window key c sits at padded position k * b + c (position k*b + c - back*b unpadded)
        position = (torch.arange(n_blocks, device=weights.device)[:, None] * size
                    + torch.arange(window_keys, device=weights.device)[None, :])  # (N, K)
        index = position[None, None, :, None, :].expand(batch, heads, -1, size, -1)
        dense = weights.new_zeros(batch, heads, n_blocks, size, padded_len)
        dense.scatter_(-1, index, weights[..., :window_keys])
        start = self.back * size
        dense = dense[..., start : start + self.length]
        if extra_index is not None:
            dense = dense.index_add(-1, extra_index, weights[..., window_keys:])
        return dense.reshape(batch, heads, n_blocks * size, self.length)[:, :, : self.length]


def banded_blocks(query: Tensor, key: Tensor, value: Tensor, window: int, key_mask: Tensor | None,
                  causal: bool) -> BandedBlocks:
    """The blocked layout of sliding-window attention (module docstring); O(n w) memory.

    Shape: query, key, value: (B, H, T, D); key_mask: (B, T) or None.
    """
    batch, _, length, _ = query.shape
    if length <= window + 1:  # every pair is within the window: one block, no look-around
        size, back, ahead = length, 0, 0
    else:
        size, back, ahead = window, 1, (0 if causal else 1)
    n_blocks = -(-length // size)
    left, right = back * size, (n_blocks + ahead) * size - length  # zero blocks around the sequence

    def look_around(x: Tensor) -> Tensor:  # (B, H, T, D) -> (B, N, H, span, D), block k: padded blocks k..k+back+ahead
        padded = F.pad(x, (0, 0, left, right)).unflatten(2, (-1, size)).transpose(1, 2)  # (B, N', H, b, D)
        return torch.cat([padded[:, i : i + n_blocks] for i in range(back + 1 + ahead)], dim=3)

    real = torch.ones(batch, length, dtype=torch.bool, device=query.device) if key_mask is None else key_mask
    real = F.pad(real, (left, right)).unflatten(1, (-1, size))  # (B, N', b): a real key of the sequence
    real = torch.cat([real[:, i : i + n_blocks] for i in range(back + 1 + ahead)], dim=2)  # (B, N, span)
    # the band, the same (b, span) pattern in every block: query r of a block is at position back*b + r
    # of its span, key c at position c, so i - j = back*b + r - c
    span = real.size(-1)
    offset = (torch.arange(size, device=query.device)[:, None] + back * size
              - torch.arange(span, device=query.device)[None, :])
    band = (offset <= window) & (offset >= (0 if causal else -window))
    queries = F.pad(query, (0, 0, 0, n_blocks * size - length)).unflatten(2, (n_blocks, size)).transpose(1, 2)
    mask = (band & real[:, :, None, :]).unsqueeze(2)  # (B, N, 1, b, span)
    return BandedBlocks(queries, look_around(key), look_around(value), mask, size, back, length)


def attend_blocks(blocks: BandedBlocks, backend: Backend, dropout_p: float,
                  need_weights: bool) -> tuple[Tensor, Tensor | None]:
    """Eq. 1 of Vaswani et al. inside every block; returns (B, H, T, D) and the block weights if asked."""
    from src.components.attention import scaled_dot_product_attention

    if backend == "math" or need_weights:
        out, weights = scaled_dot_product_attention(blocks.query, blocks.key, blocks.value, blocks.mask, dropout_p)
        return blocks.unblock(out), weights
    batch, n_blocks, heads, size, dim = blocks.query.shape
    # the blocks folded into the batch: (B, N, H, L, D) -> (B*N, H, L, D); the mask broadcasts over heads
    out = F.scaled_dot_product_attention(blocks.query.reshape(-1, heads, size, dim), blocks.key.flatten(0, 1),
                                         blocks.value.flatten(0, 1), attn_mask=blocks.mask.flatten(0, 1),
                                         dropout_p=dropout_p)
    return blocks.unblock(out.view(batch, n_blocks, heads, size, dim)), None


def _decoding_step(query: Tensor, key: Tensor, value: Tensor, window: int, key_mask: Tensor | None,
                   causal: bool, backend: Backend, dropout_p: float,
                   need_weights: bool) -> tuple[Tensor, Tensor | None]:
    """T new queries against S >= T cached keys: only the last ``window + T`` keys can be seen."""
    from src.components.attention import scaled_dot_product_attention

    query_len, key_len = query.size(2), key.size(2)
    if not causal:
        raise ValueError(f"non-causal sliding-window attention needs as many keys as queries "
                         f"(got {query_len} queries, {key_len} keys)")
    start = max(0, key_len - query_len - window)
    key, value = key[:, :, start:], value[:, :, start:]
    mask = band_mask(query_len, key_len - start, window, causal, query.device)  # (T, window + T) at most
    if key_mask is not None:
        mask = mask & key_mask[:, None, None, start:]
    if backend == "sdpa" and not need_weights:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout_p), None
    out, weights = scaled_dot_product_attention(query, key, value, mask, dropout_p)
    return out, (F.pad(weights, (start, 0)) if need_weights else None)
