"""Scaled dot-product attention, Eq. 1 of Vaswani et al. 2017 (Sec. 3.2.1), written out and fused.

Masks follow the one convention of ``src/components/masks.py``: boolean, True = may attend.
"""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Backend = Literal["sdpa", "math"]


def scaled_dot_product_attention(
    query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V (Eq. 1), returning the weights as well.

    Masked scores are filled with the dtype's minimum rather than ``-inf`` or ``-1e9``: finite in
    fp16/bf16, and a row whose keys are all masked becomes uniform instead of NaN; multiplying by
    the mask afterwards sets such a row to zero, which is what the fused SDPA kernel returns.

    Args:
        query, key, value: per-head projections.
        mask: boolean, True = may attend; ``None`` attends everywhere.
        dropout_p: dropout on the weights (Sec. 5.4 applies dropout to sublayer outputs; attention
            dropout is the common extension used by ``torch.nn.MultiheadAttention``).
        bias: added to the scores before the softmax (ALiBi, ``src/components/alibi.py``).

    Shape:
        query: (B, H, T, D); key, value: (B, H, S, D); mask, bias: broadcastable to (B, H, T, S).
        output: (B, H, T, D); weights: (B, H, T, S), before dropout.
    """
    # (B, H, T, D) @ (B, H, D, S) -> (B, H, T, S)
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.size(-1))
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0.0 else weights
    return dropped @ value, weights  # (B, H, T, S) @ (B, H, S, D) -> (B, H, T, D)


def attend(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, backend: Backend, dropout_p: float,
           need_weights: bool) -> tuple[Tensor, Tensor | None]:
    """Eq. 1 through PyTorch's fused kernel ("sdpa"), or written out ("math", or whenever the weights are
    wanted).

    Shape: as ``scaled_dot_product_attention``; the weights are None from the fused kernel.
    """
    if backend == "sdpa" and not need_weights:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout_p), None
    return scaled_dot_product_attention(query, key, value, mask, dropout_p)
