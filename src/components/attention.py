"""Multi-head attention (Vaswani et al. 2017, Sec. 3.2.2) over scaled dot-product attention (Sec. 3.2.1,
``src/components/scaled_dot_product_attention.py``).

Masks follow the one convention of ``src/components/masks.py``: boolean, True = may attend.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.components.kv_cache import KVCache
from src.components.longformer_attention import longformer_attention
from src.components.masks import causal_mask
from src.components.scaled_dot_product_attention import scaled_dot_product_attention
from src.components.sliding_window_attention import sliding_window_attention

__all__ = ["AttentionBackend", "AttentionPattern", "MultiHeadAttention", "scaled_dot_product_attention"]

AttentionBackend = Literal["sdpa", "math"]
AttentionPattern = Literal["full", "sliding_window", "longformer"]


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O (Sec. 3.2.2).

    head_i = Attention(Q W^Q_i, K W^K_i, V W^V_i).

    The projections of all heads are one (3C, C) matrix ``in_proj`` whose rows are W^Q, W^K, W^V,
    the layout of ``nn.MultiheadAttention.in_proj_weight``: self-attention projects Q, K and V in
    one matmul, cross-attention projects Q from the target and K, V from ``memory`` in one matmul
    each.

    Two backends compute Eq. 1: "sdpa" calls ``F.scaled_dot_product_attention`` (fused, never
    materialises the (T, S) weights); "math" calls ``scaled_dot_product_attention`` above. Weights
    are returned only when asked for (``need_weights=True``), which always takes the math path, so
    attention heatmaps cost nothing on ordinary steps.

    Self-attention can be restricted to a band for long inputs (``attention``): "sliding_window"
    (``src/components/sliding_window_attention.py``) or "longformer", the band plus global tokens
    with their own projections ``global_in_proj`` (``src/components/longformer_attention.py``).
    Both run on either backend and cost O(T w); cross-attention is always full.

    Args:
        d_model: model width C.
        n_heads: number of heads H; must divide ``d_model``.
        dropout: dropout probability on the attention weights.
        backend: "sdpa" (default) or "math".
        attention: "full" (default), "sliding_window" or "longformer".
        window: one-sided window w of the sliding variants.
        global_tokens: longformer's global positions (those beyond a sequence's length are skipped).
    """

    def __init__(
        self, d_model: int, n_heads: int, dropout: float = 0.0, backend: AttentionBackend = "sdpa",
        attention: AttentionPattern = "full", window: int | None = None, global_tokens: tuple[int, ...] = (0,),
    ) -> None:
        super().__init__()
        if attention not in ("full", "sliding_window", "longformer"):
            raise ValueError(f"attention must be 'full', 'sliding_window' or 'longformer', got {attention!r}")
        if attention != "full" and (window is None or window < 1):
            raise ValueError(f"attention={attention!r} needs a window >= 1 (tokens seen on each side), got {window}")
        if attention == "longformer" and not global_tokens:
            raise ValueError("attention='longformer' needs at least one global token position")
        if len(set(global_tokens)) != len(tuple(global_tokens)) or any(p < 0 for p in global_tokens):
            raise ValueError(f"global_tokens must be distinct positions >= 0, got {tuple(global_tokens)}")
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model={d_model} is not divisible by n_heads={n_heads} "
                f"(expected d_model % n_heads == 0, got remainder {d_model % n_heads})"
            )
        if backend not in ("sdpa", "math"):
            raise ValueError(f"attention backend must be 'sdpa' or 'math', got {backend!r}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.dropout_p, self.backend = dropout, backend
        self.attention, self.window, self.global_tokens = attention, window, tuple(global_tokens)
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        if attention == "longformer":  # Q_g, K_g, V_g (Longformer Sec. 3.1), laid out as in_proj
            self.global_in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` to itself (self-attention) or to ``memory`` (cross-attention).

        Args:
            x: query sequence (and key/value sequence for self-attention).
            memory: key/value sequence for cross-attention (the encoder output); None for self-attention.
            mask: boolean, True = may attend. The sliding patterns take only a key padding mask
                (B, 1, 1, S): they build the band themselves.
            is_causal: hide later positions (decoder self-attention); combined with ``mask`` if both given.
            cache: self-attention appends the new keys/values; cross-attention fills it once, then reuses it.
            need_weights: return the per-head attention weights as well.

        Shape:
            x: (B, T, C); memory: (B, S, C); mask: broadcastable to (B, H, T, S).
            output: (B, T, C); weights: (B, H, T, S) or ``None``.
        """
        if self.attention == "longformer" and memory is None and (is_causal or cache is not None):
            raise ValueError("attention='longformer' is bidirectional: it takes no causal mask and no cache")
        q, k, v = self._project(x, memory, cache)
        if self.attention != "full" and memory is None:
            out, weights = self._banded(x, q, k, v, mask, is_causal, cache, need_weights)
            return self.out_proj(out.transpose(1, 2).reshape(x.shape)), weights
        fused = self.backend == "sdpa" and not need_weights
        mask, is_causal = self._attention_mask(mask, is_causal, q, k, fused)
        dropout_p = self.dropout_p if self.training else 0.0
        if fused:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal
            )
            weights = None
        else:
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p)
        out = out.transpose(1, 2).reshape(x.shape)  # (B, H, T, D) -> (B, T, H, D) -> (B, T, C)
        return self.out_proj(out), (weights if need_weights else None)

    def _banded(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool,
                cache: KVCache | None, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """Sliding-window or Longformer self-attention; (B, H, T, D) and the weights if asked."""
        key_mask = _key_padding_mask(mask, q.size(0), k.size(2), self.attention)
        dropout_p = self.dropout_p if self.training else 0.0
        if self.attention == "sliding_window":
            return sliding_window_attention(q, k, v, self.window, key_mask, is_causal, self.backend, dropout_p,
                                            need_weights)
        length = x.size(1)
        index = torch.tensor([p for p in self.global_tokens if p < length], dtype=torch.long, device=x.device)
        c, weight, bias = self.d_model, self.global_in_proj.weight, self.global_in_proj.bias
        (global_q,) = self._split_heads(F.linear(x[:, index], weight[:c], bias[:c]), 1)
        global_k, global_v = self._split_heads(F.linear(x, weight[c:], bias[c:]), 2)
        return longformer_attention(q, k, v, global_q, global_k, global_v, index, self.window, key_mask,
                                    self.backend, dropout_p, need_weights)

    def _project(
        self, x: Tensor, memory: Tensor | None, cache: KVCache | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-head queries, keys and values, (B, H, L, D) each, using and updating ``cache``."""
        if memory is None:
            q, k, v = self._split_heads(self.in_proj(x), 3)
            if cache is not None:
                k, v = cache.append(k, v)
            return q, k, v
        c, weight, bias = self.d_model, self.in_proj.weight, self.in_proj.bias
        (q,) = self._split_heads(F.linear(x, weight[:c], bias[:c]), 1)
        if cache is not None and cache.key is not None:
            return q, cache.key, cache.value
        k, v = self.memory_keys_values(memory)
        if cache is not None:
            cache.append(k, v)
        return q, k, v

    def memory_keys_values(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention's per-head keys and values of ``memory`` (its W^K, W^V projections, Sec. 3.2.2).

        They depend on the encoder output only: decoding computes them once per source (the cross
        cache, and the ONNX encoder graph, ``src/export/graphs.py``).

        Shape:
            memory: (B, S, C) -> keys, values: (B, H, S, C/H) each.
        """
        c, weight, bias = self.d_model, self.in_proj.weight, self.in_proj.bias
        k, v = self._split_heads(F.linear(memory, weight[c:], bias[c:]), 2)
        return k, v

    def _split_heads(self, projected: Tensor, n: int) -> tuple[Tensor, ...]:
        batch, length, _ = projected.shape
        # (B, L, n*C) -> (B, L, n, H, D) -> (n, B, H, L, D), views only: SDPA accepts the strides
        heads = projected.view(batch, length, n, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return heads.unbind(0)

    def _attention_mask(
        self, mask: Tensor | None, is_causal: bool, q: Tensor, k: Tensor, fused: bool
    ) -> tuple[Tensor | None, bool]:
        """Validate ``mask``; fold the causal mask into it unless SDPA's own ``is_causal`` can be used."""
        (batch, heads, query_len, _), key_len = q.shape, k.size(2)
        if mask is not None:
            _check_mask(mask, (batch, heads, query_len, key_len))
        is_causal = is_causal and query_len > 1  # one new query may see every cached key
        fused_causal = fused and is_causal and mask is None and query_len == key_len
        if is_causal and not fused_causal:
            causal = causal_mask(query_len, key_len, q.device)
            mask = causal if mask is None else mask & causal
        return mask, fused_causal


def _key_padding_mask(mask: Tensor | None, batch: int, key_len: int, attention: str) -> Tensor | None:
    """The (B, S) key mask inside a (B, 1, 1, S) padding mask: the only mask a banded pattern takes."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise ValueError(f"attention mask must be torch.bool (True = may attend), got dtype {mask.dtype}")
    if mask.dim() != 4 or mask.shape[1:3] != (1, 1) or mask.size(3) != key_len or mask.size(0) not in (1, batch):
        raise ValueError(f"attention={attention!r} takes a key padding mask of shape (B, 1, 1, S) = "
                         f"({batch}, 1, 1, {key_len}), got {tuple(mask.shape)}; the band itself is built inside")
    return mask[:, 0, 0, :].expand(batch, key_len)


def _check_mask(mask: Tensor, scores_shape: tuple[int, int, int, int]) -> None:
    if mask.dtype != torch.bool:
        raise ValueError(f"attention mask must be torch.bool (True = may attend), got dtype {mask.dtype}")
    trailing = scores_shape[4 - mask.dim() :] if mask.dim() <= 4 else ()
    if mask.dim() > 4 or any(m not in (1, s) for m, s in zip(mask.shape, trailing, strict=True)):
        raise ValueError(
            f"attention mask of shape {tuple(mask.shape)} does not broadcast to the attention scores "
            f"(B, H, T, S) = {scores_shape}"
        )
