"""Multi-head attention (Vaswani et al. 2017, Sec. 3.2.2) over scaled dot-product attention (Sec. 3.2.1,
``src/components/scaled_dot_product_attention.py``).

Masks follow the one convention of ``src/components/masks.py``: boolean, True = may attend.

Today's models change three things here, each optional: rotary positions applied to queries and
keys (``rotary``, ``src/components/rotary_position_embedding.py``), ALiBi's linear bias on the scores
(``alibi``, ``src/components/alibi.py``), and fewer key/value heads than query heads (``n_kv_heads``,
grouped-query attention below).
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.components.alibi import alibi_bias, alibi_slopes
from src.components.kv_cache import KVCache
from src.components.lora import project_rows
from src.components.longformer_attention import global_rows_through_inputs, local_rows, longformer_attention
from src.components.masks import causal_mask
from src.components.packing import Packed, packed_self_attention
from src.components.rotary_position_embedding import RotaryPositionEmbedding
from src.components.scaled_dot_product_attention import scaled_dot_product_attention
from src.components.sliding_window_attention import fused_on_cpu, sliding_window_attention

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

    Grouped-query attention (Ainslie et al. 2023, Sec. 2.2) gives the H query heads only
    ``n_kv_heads`` = G key/value heads, each shared by a group of H/G consecutive query heads;
    G = 1 is multi-query attention (Shazeer 2019), G = H the paper's multi-head attention.
    ``in_proj`` is then (C + 2 G D, C), D = C/H, and a cache holds the G key/value heads: the
    cache, which dominates decoding memory, shrinks by H/G. They are repeated to H heads only at
    attention time, after the cache.

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
        n_kv_heads: key/value heads G (grouped-query attention); must divide ``n_heads``; None = H.
        bias: biases in the projections (Llama has none).
        rotary: rotate self-attention's queries and keys by position (RoPE); cross-attention never.
        alibi: add ALiBi's linear distance bias to the scores (full self-attention only).
    """

    def __init__(
        self, d_model: int, n_heads: int, dropout: float = 0.0, backend: AttentionBackend = "sdpa",
        attention: AttentionPattern = "full", window: int | None = None,
                 global_tokens: tuple[int, ...] = (0,),
        n_kv_heads: int | None = None, bias: bool = True, rotary: RotaryPositionEmbedding | None = None,
        alibi: bool = False,
    ) -> None:
        super().__init__()
        if attention not in ("full", "sliding_window", "longformer"):
            raise ValueError(f"attention must be 'full', 'sliding_window' or 'longformer', got {attention!r}")
        if attention != "full" and (window is None or window < 1):
            raise ValueError(f"attention={attention!r} needs a window >= 1 (tokens seen on each side), got "
                             f"{window}")
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
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        _check_modern_options(d_model, n_heads, n_kv_heads, attention, rotary, alibi)
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.n_kv_heads, self.kv_width = n_kv_heads, n_kv_heads * self.head_dim
        self.dropout_p, self.backend = dropout, backend
        self.attention, self.window, self.global_tokens = attention, window, tuple(global_tokens)
        self.in_proj = nn.Linear(d_model, d_model + 2 * self.kv_width, bias=bias)
        if attention == "longformer":  # Q_g, K_g, V_g (Longformer Sec. 3.1), laid out as in_proj
            self.global_in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.rotary, self.alibi = rotary, alibi
        if alibi:
            self.register_buffer("alibi_slopes", alibi_slopes(n_heads), persistent=False)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        need_weights: bool = False,
        packed: Packed | None = None,
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
            packed: ``x`` holds the real tokens of a padded batch, packed (``src/components/packing.py``):
                each text attends to itself; no mask, memory, cache or weights (``packs`` says when).

        Shape:
            x: (B, T, C), or (N, C) packed; memory: (B, S, C); mask: broadcastable to (B, H, T, S).
            output: as x; weights: (B, H, T, S) or ``None``.
        """
        if packed is not None:
            dropout_p = self.dropout_p if self.training else 0.0
            attended = packed_self_attention(self.in_proj(x), packed, self.n_heads, dropout_p)
            return self.out_proj(attended), None
        if self.attention == "longformer" and memory is None and (is_causal or cache is not None):
            raise ValueError("attention='longformer' is bidirectional: it takes no causal mask and no cache")
        q, k, v = self._project(x, memory, cache)
        k, v = self._repeat_kv(k), self._repeat_kv(v)
        if self.attention != "full" and memory is None:
            out, weights = self._banded(x, q, k, v, mask, is_causal, cache, need_weights)
            return self.out_proj(out.transpose(1, 2).reshape(x.shape)), weights
        out, weights = self._full(q, k, v, mask, is_causal, need_weights, self.alibi and memory is None)
        out = out.transpose(1, 2).reshape(x.shape)  # (B, H, T, D) -> (B, T, H, D) -> (B, T, C)
        return self.out_proj(out), (weights if need_weights else None)

    @property
    def packs(self) -> bool:
        """Whether ``packed`` self-attention computes this layer: full multi-head attention on the fused
        kernel, with no position inside it (rotary and ALiBi need each token's place in the padded batch)."""
        return (self.backend == "sdpa" and self.attention == "full" and self.n_kv_heads == self.n_heads
                and self.rotary is None and not self.alibi)

    def _full(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool, need_weights: bool,
              alibi: bool) -> tuple[Tensor, Tensor | None]:
        """Eq. 1 over every key, plus ALiBi's bias if asked; (B, H, T, D) and the weights (math path)."""
        fused = self.backend == "sdpa" and not need_weights
        mask, is_causal = self._attention_mask(mask, is_causal, q, k, fused and not alibi)
        bias = alibi_bias(self.alibi_slopes, q.size(2), k.size(2), q.device).to(q.dtype) if alibi else None
        dropout_p = self.dropout_p if self.training else 0.0
        if not fused:
            return scaled_dot_product_attention(q, k, v, mask, dropout_p, bias)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=_float_mask(mask, bias), dropout_p=dropout_p, is_causal=is_causal
        )
        if bias is not None and mask is not None:  # a float mask cannot zero a row with no key allowed
            out = out.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
        return out, None

    def _banded(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool,
                cache: KVCache | None, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """Sliding-window or Longformer self-attention; (B, H, T, D) and the weights if asked."""
        key_mask = _key_padding_mask(mask, q.size(0), k.size(2), self.attention)
        dropout_p = self.dropout_p if self.training else 0.0
        if self.attention == "sliding_window":
            return sliding_window_attention(q, k, v, self.window, key_mask, is_causal, self.backend,
                                            dropout_p,
                                            need_weights)
        length = x.size(1)
        index = torch.tensor([p for p in self.global_tokens if p < length], dtype=torch.long, device=x.device)
        c, weight, bias = self.d_model, self.global_in_proj.weight, self.global_in_proj.bias
        (global_q,) = self._split_heads(F.linear(x[:, index], weight[:c], bias[:c]), self.n_heads)
        if fused_on_cpu(q, self.backend, dropout_p, need_weights):  # K_g, V_g never projected for every token
            out, _ = local_rows(q, k, v, index, self.window, key_mask)
            rows = global_rows_through_inputs(x, global_q, weight[c: 2 * c], weight[2 * c:], bias[2 * c:],
                                              key_mask)
            return out.index_copy(2, index, rows), None
        global_k, global_v = self._split_heads(F.linear(x, weight[c:], bias[c:]), self.n_heads, self.n_heads)
        return longformer_attention(q, k, v, global_q, global_k, global_v, index, self.window, key_mask,
                                    self.backend, dropout_p, need_weights)

    def _project(
        self, x: Tensor, memory: Tensor | None, cache: KVCache | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Queries (B, H, T, D), keys and values (B, G, L, D), using and updating ``cache``.

        Self-attention rotates the new queries and keys at positions cached .. cached + T - 1
        before the keys enter the cache, so the cache holds rotated keys (RoFormer Eq. 34).
        """
        if memory is None:
            q, k, v = self._split_heads(self.in_proj(x), self.n_heads, self.n_kv_heads, self.n_kv_heads)
            if self.rotary is not None:
                start = 0 if cache is None else cache.length
                q, k = self.rotary(q, start), self.rotary(k, start)
            if cache is not None:
                k, v = cache.append(k, v)
            return q, k, v
        # W^Q's rows only (with their LoRA update, if adapted: src/components/lora.py)
        (q,) = self._split_heads(project_rows(self.in_proj, x, 0, self.d_model), self.n_heads)
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
            memory: (B, S, C) -> keys, values: (B, G, S, C/H) each (G = H without grouped-query attention).
        """
        projected = project_rows(self.in_proj, memory, self.d_model)  # the W^K, W^V rows
        k, v = self._split_heads(projected, self.n_kv_heads, self.n_kv_heads)
        return k, v

    def _split_heads(self, projected: Tensor, *heads: int) -> tuple[Tensor, ...]:
        """One (B, h, L, D) tensor per head count h in ``heads``, read left to right from the last dim."""
        batch, length, _ = projected.shape
        parts = projected.split([h * self.head_dim for h in heads], dim=-1)
        # (B, L, h*D) -> (B, L, h, D) -> (B, h, L, D), views only: SDPA accepts the strides
        return tuple(p.view(batch, length, h, self.head_dim).transpose(1, 2)
                     for p, h in zip(parts, heads, strict=True))

    def _repeat_kv(self, x: Tensor) -> Tensor:
        """Share each key/value head with its group of H/G query heads (Ainslie et al. 2023, Sec. 2.2)."""
        batch, groups, length, dim = x.shape
        if groups == self.n_heads:
            return x
        repeats = self.n_heads // groups
        # (B, G, L, D) -> (B, G, H/G, L, D) -> (B, H, L, D): head h reads key/value head h // (H/G)
        expanded = x[:, :, None].expand(batch, groups, repeats, length, dim)
        return expanded.reshape(batch, self.n_heads, length, dim)

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


def _check_modern_options(d_model: int, n_heads: int, n_kv_heads: int, attention: str,
                          rotary: RotaryPositionEmbedding | None, alibi: bool) -> None:
    if n_kv_heads < 1 or n_heads % n_kv_heads != 0:
        raise ValueError(f"n_kv_heads={n_kv_heads} must divide n_heads={n_heads} "
                         f"(expected a divisor of {n_heads}, got remainder {n_heads % max(n_kv_heads, 1)})")
    if rotary is not None and rotary.head_dim != d_model // n_heads:
        raise ValueError(f"rotary embedding of head_dim={rotary.head_dim} does not fit heads of "
                         f"d_model/n_heads = {d_model // n_heads}")
    if rotary is not None and attention == "longformer":
        raise ValueError("attention='longformer' takes no rotary embedding: "
                         "its global projections are not rotated")
    if alibi and attention != "full":
        raise ValueError(f"alibi biases full attention scores; attention={attention!r} builds its own band")
    if alibi and rotary is not None:
        raise ValueError("alibi and rotary are two ways to encode positions: choose one")


def _float_mask(mask: Tensor | None, bias: Tensor | None) -> Tensor | None:
    """SDPA's additive mask: the bias, with the dtype's minimum where ``mask`` forbids (finite in fp16)."""
    if bias is None or mask is None:
        return mask if bias is None else bias
    return bias.masked_fill(~mask, torch.finfo(bias.dtype).min)


def _key_padding_mask(mask: Tensor | None, batch: int, key_len: int, attention: str) -> Tensor | None:
    """The (B, S) key mask inside a (B, 1, 1, S) padding mask: the only mask a banded pattern takes."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise ValueError(f"attention mask must be torch.bool (True = may attend), got dtype {mask.dtype}")
    if mask.dim() != 4 or mask.shape[1:3] != (1, 1) or mask.size(3) != key_len or mask.size(0) not in (
            1, batch):
        raise ValueError(f"attention={attention!r} takes a key padding mask of shape (B, 1, 1, S) = "
                         f"({batch}, 1, 1, {key_len}), got {tuple(mask.shape)}; the band itself is built "
                         "inside")
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
