"""The one attention-mask convention of this project.

**True = may attend.** Every mask is a ``torch.bool`` tensor that broadcasts to the attention
scores ``(B, H, T, S)``; an entry is True where query ``t`` may look at key ``s``. This is the
convention of ``torch.nn.functional.scaled_dot_product_attention``. ``torch.nn.MultiheadAttention``
and ``torch.nn.Transformer`` use the opposite one (True = blocked); ``to_torch_mask`` converts at
that boundary and nowhere else.

Letters used in shape comments across ``src/components`` and ``src/models``:
B batch, H heads, T target (query) length, S source (key) length, C d_model, V vocabulary.

Masks stay boolean all the way down: no ``-1e9`` fill (it overflows to ``-inf`` in fp16 and
still leaves a tiny probability in fp32), no float mask materialised per head. A query whose keys
are all masked (an all-padding source) gets an output of zeros from both attention backends,
never NaN.
"""

import torch
from torch import Tensor


def padding_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """Key mask that hides padding tokens.

    Args:
        tokens: token ids.
        pad_id: id of the padding token.

    Shape:
        tokens: (B, S) -> mask: (B, 1, 1, S), broadcasting over heads and queries.
    """
    return (tokens != pad_id)[:, None, None, :]  # (B, S) -> (B, 1, 1, S)


def causal_mask(query_len: int, key_len: int, device: torch.device | None = None) -> Tensor:
    """Mask that stops a position attending to later positions (Sec. 3.2.3, decoder self-attention).

    The queries are the last ``query_len`` of ``key_len`` positions (aligned bottom-right), so the
    same mask serves a full target (``query_len == key_len``) and the new tokens of a cached
    decoding step (``key_len = past + query_len``).

    Shape:
        output: (T, S) with T = query_len, S = key_len.
    """
    ones = torch.ones(query_len, key_len, dtype=torch.bool, device=device)
    return ones.tril(diagonal=key_len - query_len)


def to_torch_mask(mask: Tensor) -> Tensor:
    """Convert our True = may attend mask into PyTorch's True = blocked (``nn.MultiheadAttention``).

    A (B, 1, 1, S) padding mask becomes a (B, S) ``key_padding_mask``; a (T, S) mask becomes an
    ``attn_mask`` of the same shape.
    """
    if mask.dim() == 4:
        mask = mask[:, 0, 0, :]  # (B, 1, 1, S) -> (B, S)
    return ~mask
