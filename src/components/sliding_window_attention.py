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
- ``"sdpa"``: PyTorch's fused kernel computes every block without materialising its weights. On the
  CPU it reads each block's keys in place, through an overlapping view, forward and backward
  (``src/components/sliding_window_flash_attention.py``); elsewhere (CUDA, attention dropout, export)
  ``F.scaled_dot_product_attention`` runs once over the gathered blocks (folded into the batch);
- ``"math"``: ``scaled_dot_product_attention`` (Eq. 1 written out) on the blocked tensors, which
  also returns the weights. ``need_weights=True`` always takes it and scatters the band back into
  a (T, S) matrix for the heatmaps; that dense matrix is for inspection only.

Masks follow ``src/components/masks.py``: boolean, True = may attend. A query whose window holds
no real key (e.g. padding beyond the end of a short text) gets an output of zeros, as in full attention.
``band_mask`` is the dense reference the tests compare against; it is never the implementation.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from src.components.scaled_dot_product_attention import Backend, attend, scaled_dot_product_attention
from src.components.sliding_window_flash_attention import sliding_window_flash_attention


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
    if fused_on_cpu(query, backend, dropout_p, need_weights):
        return sliding_window_flash_attention(query, key, value, window, key_mask, causal), None
    blocks = banded_blocks(query_len, window, key_mask, causal, query.size(0), query.device)
    return attend_blocks(blocks, query, key, value, backend, dropout_p, need_weights)


def fused_on_cpu(query: Tensor, backend: Backend, dropout_p: float, need_weights: bool) -> bool:
    """Whether the band goes through the CPU flash kernel over overlapping blocks
    (``src/components/sliding_window_flash_attention.py``).

    Not with attention dropout (the kernel has none) nor for weights; not while exporting: the kernel's
    private op is not an ONNX operator, and its group loop is a Python loop over the length.
    """
    return (query.device.type == "cpu" and backend == "sdpa" and dropout_p == 0.0 and not need_weights
            and not torch.compiler.is_exporting())


class BandedBlocks:
    """Which keys each block of queries reads: the blocked layout of sliding-window attention.

    Blocks hold positions, not copies: ``gather`` copies the queries, keys and values of a range of
    blocks when they are needed, so that the fused path can work through the blocks a group at a time.

    Attributes:
        query_index: (N * b,) the position of every query slot (the last block's spare slots repeat
            the last position; their outputs are dropped).
        key_index: (N, K) the position of every key slot of every block; K = (back + 1 + ahead) * b
            window keys, then any keys added by ``append_keys``. Slots outside the sequence repeat an
            edge position and are masked out.
        mask: (B, N, 1, b, K) boolean, True = may attend; the same for every head.
    """

    def __init__(self, query_index: Tensor, key_index: Tensor, mask: Tensor, size: int, length: int) -> None:
        self.query_index, self.key_index, self.mask = query_index, key_index, mask
        self.size, self.length = size, length

    @property
    def n_blocks(self) -> int:
        return self.key_index.size(0)

    def append_keys(self, index: Tensor, key_mask: Tensor) -> None:
        """Let every query also see the keys at positions ``index`` (after its window), where ``key_mask``
        allows.

        Shape: index: (E,); key_mask: (B, E).
        """
        self.key_index = torch.cat([self.key_index, index.expand(self.n_blocks, -1)], dim=1)
        # (B, N, 1, b, E)
        extra = key_mask[:, None, None, None, :].expand(-1, self.n_blocks, 1, self.size, -1)
        self.mask = torch.cat([self.mask, extra], dim=-1)

    def gather(self, x: Tensor, index: Tensor) -> Tensor:
        """The rows ``index`` (G, L) of ``x`` (B, H, T, D), one group of G blocks: (B*G, H, L, D)."""
        batch, heads, _, dim = x.shape
        rows = x.transpose(1, 2).index_select(1, index.flatten())  # (B, G*L, H, D)
        return rows.view(batch * index.size(0), index.size(1), heads, dim).transpose(1, 2)

    def blocks(self, query: Tensor, key: Tensor, value: Tensor, start: int = 0, stop: int | None = None,
               ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Queries, keys, values (B*G, H, L, D) and the mask (B*G, 1, b, K) of blocks ``start:stop``."""
        stop = self.n_blocks if stop is None else stop
        query_index = self.query_index.view(self.n_blocks, self.size)[start:stop]
        key_index = self.key_index[start:stop]
        return (self.gather(query, query_index), self.gather(key, key_index), self.gather(value, key_index),
                self.mask[:, start:stop].flatten(0, 1))

    def unblock(self, out: Tensor) -> Tensor:
        """(B*N, H, b, D) block outputs -> (B, H, T, D), dropping the spare query slots."""
        _, heads, size, dim = out.shape
        blocked = out.view(-1, self.n_blocks, heads, size, dim).transpose(1, 2)  # (B, H, N, b, D)
        return blocked.flatten(2, 3)[:, :, : self.length]

    def dense_weights(self, weights: Tensor) -> Tensor:
        """Scatter block weights (B*N, H, b, K) into the (B, H, T, T) matrix they stand for (heatmaps
        only)."""
        _, heads, size, keys = weights.shape
        weights = weights.view(-1, self.n_blocks, heads, size, keys).transpose(1, 2)  # (B, H, N, b, K)
        index = self.key_index[None, None, :, None, :].expand_as(weights)
        dense = weights.new_zeros(*weights.shape[:-1], self.length)
        dense.scatter_add_(-1, index, weights)  # masked slots carry weight 0 wherever they point
        return dense.flatten(2, 3)[:, :, : self.length]


def banded_blocks(length: int, window: int, key_mask: Tensor | None, causal: bool, batch: int,
                  device: torch.device) -> BandedBlocks:
    """The blocked layout of sliding-window attention (module docstring): O(n w) slots.

    Shape: key_mask: (B, T) or None.
    """
    # every pair is within the window: one block, no look-around. While exporting, one block always
    # (a dense band, O(n^2)): a branch on the length would narrow the graph's length axis to the
    # example's side of it, and the block count of the blocked layout is compared with 1 by torch.export
    if torch.compiler.is_exporting() or length <= window + 1:
        size, back, ahead = length, 0, 0
    else:
        size, back, ahead = window, 1, (0 if causal else 1)
    n_blocks = -(-length // size)
    span = (back + 1 + ahead) * size
    # block k reads the keys at positions (k - back) * b .. (k + 1 + ahead) * b - 1
    position = ((torch.arange(n_blocks, device=device)[:, None] - back) * size
                + torch.arange(span, device=device)[None, :])  # (N, K)
    inside = (position >= 0) & (position < length)
    key_index = position.clamp(0, length - 1)
    real = inside if key_mask is None else inside & key_mask[:, key_index]  # (N, K) or (B, N, K)
    # the band, the same (b, K) pattern in every block: query r of block k is at position k*b + r, so
    # i - j = back*b + r - c for its key slot c
    offset = (
        torch.arange(size, device=device)[:, None] + back * size - torch.arange(span, device=device)[None, :])
    band = (offset <= window) & (offset >= (0 if causal else -window))
    mask = (band & real[..., None, :]).expand(batch, n_blocks, size, span).unsqueeze(2)  # (B, N, 1, b, K)
    query_index = torch.arange(n_blocks * size, device=device).clamp(max=length - 1)
    return BandedBlocks(query_index, key_index, mask, size, length)


def attend_blocks(blocks: BandedBlocks, query: Tensor, key: Tensor, value: Tensor, backend: Backend,
                  dropout_p: float, need_weights: bool) -> tuple[Tensor, Tensor | None]:
    """Eq. 1 of Vaswani et al. inside every block: (B, H, T, D), and the dense weights if asked.

    The fused path on the CPU does not come here (``fused_on_cpu``); on CUDA, with attention dropout or
    while exporting, every block goes through ``F.scaled_dot_product_attention`` at once.
    """
    if backend == "math" or need_weights:
        q, k, v, mask = blocks.blocks(query, key, value)
        out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p)
        return blocks.unblock(out), (blocks.dense_weights(weights) if need_weights else None)
    q, k, v, mask = blocks.blocks(query, key, value)
    # a query whose window holds no real key (padding past a text's end) gets one harmless key and a
    # zero output, as on the other paths: not every fused kernel returns zeros for an empty row
    empty = ~mask.any(-1, keepdim=True)  # (B*N, 1, b, 1)
    mask = mask | (empty & (torch.arange(mask.size(-1), device=mask.device) == 0))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p).masked_fill(empty, 0.0)
    return blocks.unblock(out), None


def _decoding_step(query: Tensor, key: Tensor, value: Tensor, window: int, key_mask: Tensor | None,
                   causal: bool, backend: Backend, dropout_p: float,
                   need_weights: bool) -> tuple[Tensor, Tensor | None]:
    """T new queries against S >= T cached keys: only the last ``window + T`` keys can be seen."""
    query_len, key_len = query.size(2), key.size(2)
    if not causal:
        raise ValueError(f"non-causal sliding-window attention needs as many keys as queries "
                         f"(got {query_len} queries, {key_len} keys)")
    start = max(0, key_len - query_len - window)
    key, value = key[:, :, start:], value[:, :, start:]
    mask = band_mask(query_len, key_len - start, window, causal, query.device)  # (T, window + T) at most
    if key_mask is not None:
        mask = mask & key_mask[:, None, None, start:]
    out, weights = attend(query, key, value, mask, backend, dropout_p, need_weights)
    return out, (F.pad(weights, (start, 0)) if need_weights else None)
