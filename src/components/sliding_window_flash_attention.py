"""Sliding-window attention on the CPU through PyTorch's fused (flash) attention kernel, forward and backward.

The band of ``src/components/sliding_window_attention.py`` costs O(n w) scores, but the blocked layout
there gathers each block's keys and values into copies (3x the keys), and every gather, copy and
mask is a pass over memory. Here the kernel reads the keys where they lie:

- **Overlapping blocks as a view.** Queries are cut into blocks of ``b`` rows. Block k reads the keys
  at positions k*b - back .. k*b + b + ahead - 1 (back = w; ahead = w, or 0 for causal attention). In a
  buffer holding the keys of the sequence after ``back`` rows of zeros, that window starts at row k*b:
  every block's window is the same (K, H, D) shape at a stride of b rows, one ``as_strided`` view of
  (N, H, K, D) over the buffer: the buffer is the one copy of the keys, no block has its own.
  ``_scaled_dot_product_flash_attention_for_cpu`` takes such strided views (it reads the strides) and
  works through a group of blocks per call.
- **The band as the kernel's additive mask.** Inside a block the band is the same (b, K) pattern for
  every block, one broadcast mask; only the blocks whose window reaches outside the sequence or over
  padding need their own (G, 1, b, K) mask.
- **Backward from the same kernel.** ``..._backward`` returns each block's gradients for its K key
  slots; they are added back at the rows they read (``index_add_``), a group of blocks at a time, so
  that the per-block gradients of the keys (K / b times the keys) are never all alive at once.
- **Keys every query sees** (Longformer's global tokens) are a second call over all queries; the two
  softmaxes are merged exactly through their log-sum-exps (the flash rescaling, Dao et al. 2022,
  Sec. 3.1), and each call's backward is given the merged output and log-sum-exp, which is all the
  flash backward needs to compute its share of the gradients.

The scores computed are (b + back + ahead) per query instead of the band's 2w + 1; the block size
trades that excess against the kernel's efficiency on short blocks (``block_size``).
"""

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
FLASH_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def block_size(window: int, length: int) -> int:
    """Queries per block for a one-sided ``window`` over ``length`` tokens.

    Each query pays for b extra scores beyond its window, so small blocks waste less; but the kernel
    cuts a call's queries into tiles of 32 rows below 192 queries and of 64 from 192, and the larger tiles
    run its matrix products faster. Measured with one thread at n = 8192 (forward + backward, kernel
    only): best at b = 64 for w = 32, 128 for w = 64 and 128; for w = 256, 192 and 256 alike (259 and
    260 ms), for w = 512 192 (499 ms, 256: 516). 256 where it divides the length: no spare rows to pad.
    """
    if window < 64:
        return 64
    if window < 192:
        return 128
    return 256 if length % 256 == 0 else 192


class BandLayout:
    """Where every block of queries reads its keys: the overlapping-view layout of the module docstring.

    The B sequences lie end to end, N*b rows each, so that the blocks of all of them are one strided view
    (a window that reaches into the next sequence reads keys that its mask hides).

    Attributes:
        size: b, queries per block; n_blocks: N per sequence; back, ahead: key slots before / after a block.
        real: (B*N, K) True where a block's key slot holds a real key of its own sequence (not padding,
            not outside the sequence, not another sequence's).
        band: (b, K) the window inside a block: query r sees key slot c when |r + back - c| <= window
            (causal: 0 <= r + back - c <= window).
    """

    GROUP_KEYS = 4096  # key slots per group of blocks: bounds the per-block gradients alive at once

    def __init__(self, batch: int, length: int, window: int, causal: bool, key_mask: Tensor | None,
                 device: torch.device, size: int | None = None) -> None:
        self.batch, self.length = batch, length
        self.size = min(size or block_size(window, length), length)
        self.n_blocks = -(-length // self.size)
        # no block reads further than the sequence reaches: a window wider than it is the whole sequence
        self.back = min(window, (self.n_blocks - 1) * self.size)
        self.ahead = 0 if causal else self.back
        slot = torch.arange(self.back + self.size + self.ahead, device=device)
        offset = torch.arange(self.size, device=device)[:, None] + self.back - slot  # i - j, (b, K)
        self.band = (offset <= window) & (offset >= (0 if causal else -window))
        # block k's slot c holds the key at position k*b - back + c, (N, K)
        position = torch.arange(self.n_blocks, device=device)[:, None] * self.size - self.back + slot
        real = ((position >= 0) & (position < length)).expand(batch, -1, -1)
        if key_mask is not None:
            index = position.clamp(0, length - 1).flatten().expand(batch, -1)
            real = real & key_mask.gather(1, index).view(batch, *position.shape)
        self.real = real.reshape(batch * self.n_blocks, -1)
        self.clean = self.real.all(dim=1).tolist()  # blocks that need only the band: its broadcast mask
        self._band_mask: Tensor | None = None

    @property
    def span(self) -> int:
        """K, the key slots of a block."""
        return self.band.size(1)

    @property
    def rows(self) -> int:
        """Rows per sequence in the blocked layout (N*b >= T: the last block's spare rows)."""
        return self.n_blocks * self.size

    def groups(self) -> list[tuple[int, int]]:
        """(start, stop) ranges of blocks over all sequences; clean and masked blocks in separate groups."""
        step, ranges, start = max(1, self.GROUP_KEYS // self.span), [], 0
        while start < len(self.clean):
            stop = start + 1
            while stop < len(self.clean) and stop - start < step and self.clean[stop] == self.clean[start]:
                stop += 1
            ranges.append((start, stop))
            start = stop
        return ranges

    def queries(self, x: Tensor) -> Tensor:
        """(B, H, T, D) -> (B*N*b, H, D) rows, each sequence padded to N*b (a view where it needs none)."""
        rows = x.transpose(1, 2)  # (B, T, H, D)
        if self.rows != self.length:
            rows = F.pad(rows, (0, 0, 0, 0, 0, self.rows - self.length))
        return rows.reshape(-1, *rows.shape[2:])

    def keys(self, x: Tensor) -> Tensor:
        """(B, H, T, D) -> the key buffer (back + B*N*b + ahead, H, D): the sequences N*b rows apart,
        zeros around them (masked, but they must be finite: 0 x a finite value is 0)."""
        batch, heads, _, dim = x.shape
        buffer = x.new_empty(self.back + batch * self.rows + self.ahead, heads, dim)
        buffer[: self.back].zero_()
        buffer[self.back + batch * self.rows:].zero_()
        sequences = self.sequences(buffer)  # (B, N*b, H, D)
        sequences[:, self.length:].zero_()
        sequences[:, : self.length] = x.transpose(1, 2)
        return buffer

    def sequences(self, buffer: Tensor) -> Tensor:
        """The key buffer's rows of the sequences, (B, N*b, H, D), a view."""
        inside = buffer[self.back: self.back + self.batch * self.rows]
        return inside.view(self.batch, self.rows, *buffer.shape[1:])

    def block_rows(self, rows: Tensor, start: int, stop: int) -> Tensor:
        """The rows of blocks ``start:stop`` of a (B*N*b, ...) tensor."""
        return rows[start * self.size: stop * self.size]

    def query_blocks(self, rows: Tensor, start: int, stop: int) -> Tensor:
        """Blocks ``start:stop`` of (B*N*b, H, D) rows as (G, H, b, D), a view."""
        blocks = self.block_rows(rows, start, stop).view(stop - start, self.size, *rows.shape[1:])
        return blocks.transpose(1, 2)

    def key_blocks(self, buffer: Tensor, start: int, stop: int) -> Tensor:
        """The windows of blocks ``start:stop`` as (G, H, K, D): one overlapping view of the buffer."""
        _, heads, dim = buffer.shape
        row = heads * dim
        return buffer.as_strided((stop - start, heads, self.span, dim), (self.size * row, dim, row, 1),
                                 buffer.storage_offset() + start * self.size * row)

    def key_rows(self, start: int, stop: int) -> Tensor:
        """(G*K,) the buffer row of every key slot of blocks ``start:stop`` (to add gradients back)."""
        first = torch.arange(start, stop, device=self.band.device)[:, None] * self.size
        return (first + torch.arange(self.span, device=self.band.device)).flatten()

    def mask(self, start: int, stop: int, dtype: torch.dtype) -> Tensor:
        """The kernel's additive mask of blocks ``start:stop``: (1, 1, b, K) for clean blocks (the band,
        broadcast over blocks, made once), else (G, 1, b, K)."""
        if not self.clean[start]:
            return _additive((self.band & self.real[start:stop, None, :])[:, None], dtype)
        if self._band_mask is None or self._band_mask.dtype != dtype:
            self._band_mask = _additive(self.band[None, None], dtype)
        return self._band_mask

    def empty_rows(self, start: int, stop: int) -> Tensor:
        """(G*b,) True for the queries of blocks ``start:stop`` whose window holds no real key."""
        if self.clean[start]:  # every query of a clean block sees itself at least
            return torch.zeros((stop - start) * self.size, dtype=torch.bool, device=self.band.device)
        return ~(self.band & self.real[start:stop, None, :]).any(-1).flatten()

    def unblock(self, rows: Tensor) -> Tensor:
        """(B*N*b, H, ...) rows -> (B, H, T, ...), dropping each sequence's spare rows."""
        return rows.view(self.batch, self.rows, *rows.shape[1:])[:, : self.length].transpose(1, 2)


def sliding_window_flash_attention(query: Tensor, key: Tensor, value: Tensor, window: int,
                                   key_mask: Tensor | None = None, causal: bool = False,
                                   global_index: Tensor | None = None,
                                   global_mask: Tensor | None = None) -> Tensor:
    """Sliding-window attention through the fused CPU kernel; optionally also keys every query sees.

    Args:
        query, key, value: per-head projections of one sequence per batch row.
        window: one-sided window w >= 1.
        key_mask: True at the keys the window may see (real tokens); None: all.
        causal: look only backwards.
        global_index: positions whose keys every query sees as well (Longformer's global tokens); mask
            them out of ``key_mask``, so that no key is counted twice.
        global_mask: (B, G) True where a global key is real; None: all.

    Shape:
        query, key, value: (B, H, T, D); key_mask: (B, T); global_index: (G,). output: (B, H, T, D).
    """
    layout = BandLayout(query.size(0), query.size(2), window, causal, key_mask, query.device)
    if global_index is not None and global_mask is None:
        global_mask = torch.ones(query.size(0), global_index.numel(), dtype=torch.bool, device=query.device)
    return _BandFlashAttention.apply(query, key, value, layout, global_index, global_mask)


def _additive(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean mask -> 0 / -inf, the form the kernel adds to the scores."""
    zeros = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return zeros.masked_fill_(~allowed, float("-inf"))


class _BandFlashAttention(torch.autograd.Function):
    """Forward and backward of the module docstring: the band by blocks, then the keys every query sees."""

    @staticmethod
    def forward(ctx, query: Tensor, key: Tensor, value: Tensor, layout: BandLayout,
                global_index: Tensor | None, global_mask: Tensor | None) -> Tensor:
        heads, dim = query.size(1), query.size(3)
        # compact copies: views would keep the whole (B, T, 3C) projection alive until the backward pass
        rows, keys, values = layout.queries(query).contiguous(), layout.keys(key), layout.keys(value)
        out = rows.new_empty(rows.shape)  # (B*N*b, H, D)
        logsumexp = rows.new_empty(rows.shape[:2], dtype=torch.float32)  # (B*N*b, H)
        for start, stop in layout.groups():
            block_out, block_lse = FLASH(
                layout.query_blocks(rows, start, stop), layout.key_blocks(keys, start, stop),
                layout.key_blocks(values, start, stop), attn_mask=layout.mask(start, stop, query.dtype))
            # (G, H, b, D) -> (G*b, H, D); the kernel's memory is already (G, b, H, D)
            layout.block_rows(out, start, stop).copy_(block_out.transpose(1, 2).reshape(-1, heads, dim))
            lse = layout.block_rows(logsumexp, start, stop)
            lse.copy_(block_lse.transpose(1, 2).reshape(-1, heads))
            if global_index is not None:  # the kernel's log-sum-exp of a row without keys is 0, not -inf
                lse.masked_fill_(layout.empty_rows(start, stop)[:, None], float("-inf"))
        global_keys = None
        if global_index is not None:
            global_keys = (key[:, :, global_index], value[:, :, global_index], global_mask)
            _merge_global_keys(query, layout.unblock(out), layout.unblock(logsumexp), *global_keys)
        ctx.layout, ctx.global_index, ctx.global_keys = layout, global_index, global_keys
        ctx.save_for_backward(rows, keys, values, out, logsumexp)
        return layout.unblock(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        rows, keys, values, out, logsumexp = ctx.saved_tensors
        layout, (heads, dim) = ctx.layout, rows.shape[1:]
        grad_rows, grad_query = layout.queries(grad), rows.new_empty(rows.shape)
        grad_keys, grad_values = torch.zeros_like(keys), torch.zeros_like(values)
        for start, stop in layout.groups():
            block_lse = layout.block_rows(logsumexp, start, stop).view(stop - start, layout.size, heads)
            grad_q, grad_k, grad_v = FLASH_BACKWARD(
                layout.query_blocks(grad_rows, start, stop), layout.query_blocks(rows, start, stop),
                layout.key_blocks(keys, start, stop), layout.key_blocks(values, start, stop),
                layout.query_blocks(out, start, stop), block_lse.transpose(1, 2), 0.0, False,
                attn_mask=layout.mask(start, stop, rows.dtype))
            layout.block_rows(grad_query, start, stop).copy_(grad_q.transpose(1, 2).reshape(-1, heads, dim))
            # every key slot's gradient goes back to the row it read: (G, H, K, D) -> (G*K, H, D)
            index = layout.key_rows(start, stop)
            grad_keys.index_add_(0, index, grad_k.transpose(1, 2).reshape(-1, heads, dim))
            grad_values.index_add_(0, index, grad_v.transpose(1, 2).reshape(-1, heads, dim))
        grad_query = layout.unblock(grad_query)
        grad_key, grad_value = (layout.sequences(g)[:, : layout.length].transpose(1, 2)
                                for g in (grad_keys, grad_values))
        if ctx.global_keys is not None:
            global_key, global_value, global_mask = ctx.global_keys
            grad_q, grad_k, grad_v = FLASH_BACKWARD(
                grad, layout.unblock(rows), global_key, global_value, layout.unblock(out),
                layout.unblock(logsumexp), 0.0, False,
                attn_mask=_additive(global_mask[:, None, None, :], rows.dtype))
            # in place: these are views of this pass's own buffers, and a copy would be n d more memory
            grad_query.add_(grad_q)
            grad_key.index_add_(2, ctx.global_index, grad_k)
            grad_value.index_add_(2, ctx.global_index, grad_v)
        return grad_query, grad_key, grad_value, None, None, None


def _merge_global_keys(query: Tensor, out: Tensor, logsumexp: Tensor, global_key: Tensor,
                       global_value: Tensor, global_mask: Tensor) -> None:
    """Add the global keys to every query's softmax, in place of ``out`` and ``logsumexp``.

    Two softmaxes over disjoint key sets, with outputs o1, o2 and log-sum-exps l1, l2, are one softmax
    over their union: l = log(e^l1 + e^l2), o = e^(l1 - l) o1 + e^(l2 - l) o2.

    Shape: query, out: (B, H, T, D); logsumexp: (B, H, T); global_key, global_value: (B, H, G, D).
    """
    global_out, global_lse = FLASH(query, global_key, global_value,
                                   attn_mask=_additive(global_mask[:, None, None, :], query.dtype))
    global_lse = global_lse.masked_fill(~global_mask.any(-1)[:, None, None], float("-inf"))
    total = torch.logaddexp(logsumexp, global_lse)
    total = total.masked_fill(total == float("-inf"), 0.0)  # no key at all: output 0, as in full attention
    global_out.mul_((global_lse - total).exp()[..., None])  # in place: no (B, H, T, D) temporaries
    out.mul_((logsumexp - total).exp()[..., None]).add_(global_out)
    logsumexp.copy_(total)
