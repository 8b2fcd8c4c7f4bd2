"""Longformer attention: a sliding window plus a few global tokens (Beltagy et al. 2020, Sec. 3.1).

"Longformer: The Long-Document Transformer" keeps the O(n w) sliding window
(``src/components/sliding_window_attention.py``) and adds "global attention on few pre-selected
input locations": a global token attends to every token, and every token attends to it. For
classification the global token is ``[CLS]`` (Sec. 3.1, "Task motivated global attention"), so the
vector that is pooled has seen the whole document in every layer, while all other tokens stay
local. With g global tokens the cost is O(n w + n g).

Two sets of projections (Sec. 3.1, "Linear Projections for Global Attention"): the local window
uses Q_s, K_s, V_s (``MultiHeadAttention.in_proj``), the global rows use their own Q_g, K_g, V_g
(``global_in_proj``), as Hugging Face's ``LongformerSelfAttention`` (``query_global``,
``key_global``, ``value_global``), which the tests match given the same weights.

The computation, for every sequence of the batch:
1. every query attends, in one softmax, to the real keys of its window that are not global, and to
   all global keys (through the local projections K_s, V_s);
2. the rows of the global tokens are then replaced by full attention from Q_g over every real key
   (through K_g, V_g): O(g n).
"""

import torch
from torch import Tensor

from src.components.scaled_dot_product_attention import Backend, attend
from src.components.sliding_window_attention import attend_blocks, banded_blocks, fused_on_cpu
from src.components.sliding_window_flash_attention import sliding_window_flash_attention


def longformer_attention(
    query: Tensor, key: Tensor, value: Tensor, global_query: Tensor, global_key: Tensor, global_value: Tensor,
    global_index: Tensor, window: int, key_mask: Tensor | None = None, backend: Backend = "sdpa",
    dropout_p: float = 0.0, need_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Sliding-window attention with global tokens at the positions ``global_index``.

    Args:
        query, key, value: local projections (Q_s, K_s, V_s) of every token.
        global_query: the global query projection (Q_g) of the global tokens only.
        global_key, global_value: the global key/value projections (K_g, V_g) of every token.
        global_index: the positions of the global tokens, distinct and < T.
        window: one-sided window w.
        key_mask: True at real tokens; a padding position is never attended, even if listed global.
        backend: "sdpa" or "math", as in ``sliding_window_attention``.
        dropout_p: dropout on the attention weights.
        need_weights: also return the dense (B, H, T, T) weights (for heatmaps).

    Shape:
        query, key, value, global_key, global_value: (B, H, T, D); global_query: (B, H, G, D);
        global_index: (G,); key_mask: (B, T). output: (B, H, T, D); weights: (B, H, T, T) or None.
    """
    out, weights = local_rows(query, key, value, global_index, window, key_mask, backend, dropout_p,
                              need_weights)
    # 2. the global tokens' own rows: full attention through the global projections, O(G T)
    everything = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, T)
    global_out, global_weights = attend(global_query, global_key, global_value, everything, backend,
                                        dropout_p, need_weights)
    out = out.index_copy(2, global_index, global_out)
    if not need_weights:
        return out, None
    return out, weights.index_copy(2, global_index, global_weights)


def local_rows(query: Tensor, key: Tensor, value: Tensor, global_index: Tensor, window: int,
               key_mask: Tensor | None, backend: Backend = "sdpa", dropout_p: float = 0.0,
               need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """Step 1 for every row: the window without the global keys, then the global keys, in one softmax.

    The rows of the global tokens are computed too (they are replaced by step 2). Shapes as in
    ``longformer_attention``.
    """
    batch, _, length, _ = query.shape
    real = torch.ones(batch, length, dtype=torch.bool, device=query.device) if key_mask is None else key_mask
    is_global = torch.zeros_like(real)
    is_global[:, global_index] = True
    if fused_on_cpu(query, backend, dropout_p, need_weights):
        out = sliding_window_flash_attention(query, key, value, window, real & ~is_global,
                                             global_index=global_index, global_mask=real[:, global_index])
        return out, None
    blocks = banded_blocks(length, window, real & ~is_global, False, batch, query.device)
    blocks.append_keys(global_index, real[:, global_index])
    return attend_blocks(blocks, query, key, value, backend, dropout_p, need_weights)


def global_rows_through_inputs(x: Tensor, global_query: Tensor, global_key_weight: Tensor,
                               global_value_weight: Tensor, global_value_bias: Tensor,
                               key_mask: Tensor | None) -> Tensor:
    """Step 2 (the global tokens' rows) without projecting K_g, V_g of every token.

    The score of global query q against token x_j is q . (W_k x_j + b_k) = (W_k^T q) . x_j + q . b_k:
    the second term is the same for every key, and a softmax does not see a constant shift. So each
    head's query is carried into the input space once (W_k^T q, C numbers), attends over the inputs
    themselves, and the weighted sum of inputs is projected by W_v after it:
    sum_j p_j (W_v x_j + b_v) = W_v (sum_j p_j x_j) + b_v. O(G T C) per head instead of the O(T C^2) of
    K_g, V_g for every token; exact up to rounding. A row with no real key is zeros, as in ``attend``.

    Shape:
        x: (B, T, C); global_query: (B, H, G, D); global_key_weight, global_value_weight: (C, C) (rows:
        heads x D); global_value_bias: (C,); key_mask: (B, T). output: (B, H, G, D).
    """
    batch, length, width = x.shape
    heads, n_global, dim = global_query.shape[1:]
    # (B, H, G, D) x (H, D, C) -> (B, H*G, C): each head's query in the input space, scaled as Eq. 1
    carried = torch.einsum("bhgd,hdc->bhgc", global_query, global_key_weight.view(heads, dim, width))
    carried = carried.reshape(batch, heads * n_global, width) * dim**-0.5
    # the heads as rows of one product with the inputs: no (B, H, T, C) copy of them, nor of their gradient
    scores = carried @ x.transpose(1, 2)  # (B, H*G, T)
    if key_mask is not None:
        # the dtype's minimum, not -inf: a sequence with no real key gets finite weights (zeroed below)
        scores = scores.masked_fill(~key_mask[:, None, :], torch.finfo(scores.dtype).min)
    mixed = scores.softmax(dim=-1) @ x  # (B, H*G, C)
    # (B, H, G, C) x (H, D, C) -> (B, H, G, D)
    out = torch.einsum("bhgc,hdc->bhgd", mixed.view(batch, heads, n_global, width),
                       global_value_weight.view(heads, dim, width)) + global_value_bias.view(heads, 1, dim)
    if key_mask is None:
        return out
    return out.masked_fill(~key_mask.any(-1)[:, None, None, None], 0.0)  # no real key: zeros
