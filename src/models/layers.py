"""Encoder and decoder layers and their stacks (Vaswani et al. 2017, Sec. 3.1, Fig. 1).

Each sublayer sits in a residual connection with dropout on its output (Sec. 5.4) and a LayerNorm:
post-norm, the paper's placement, ``x = LayerNorm(x + Dropout(Sublayer(x)))``; or pre-norm
(Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture"),
``x = x + Dropout(Sublayer(LayerNorm(x)))``, which needs a final LayerNorm after the stack.
Names match ``torch.nn.TransformerEncoderLayer`` / ``TransformerDecoderLayer`` (norm1, norm2,
norm3, linear1, linear2) so that ``torch_compat`` maps one onto the other line by line.
"""

from collections.abc import Iterable

from torch import Tensor, nn

from src.components.attention import AttentionBackend, AttentionPattern, MultiHeadAttention
from src.components.dropout import Dropout
from src.components.feed_forward import Activation, PositionwiseFeedForward
from src.components.kv_cache import DecoderCache, KVCache
from src.components.packing import Packed
from src.components.rms_norm import make_norm
from src.components.rotary_position_embedding import RotaryPositionEmbedding


class EncoderLayer(nn.Module):
    """Self-attention, then a position-wise feed-forward network (Sec. 3.1).

    Args:
        d_model: model width C.
        n_heads: attention heads H.
        d_ff: feed-forward inner width.
        dropout: residual and feed-forward dropout (Sec. 5.4).
        attention_dropout: dropout on attention weights.
        activation: feed-forward activation.
        norm_first: pre-norm if True, post-norm (the paper) if False.
        layer_norm_eps: LayerNorm epsilon.
        backend: attention backend, "sdpa" or "math".
        attention: self-attention pattern, "full", "sliding_window" or "longformer" (``MultiHeadAttention``).
        window: one-sided window of the sliding patterns.
        global_tokens: longformer's global positions.
        norm: "layernorm" (the paper) or "rmsnorm" (Zhang & Sennrich 2019).
        n_kv_heads: key/value heads (grouped-query attention); None = n_heads.
        bias: biases in attention and feed-forward.
        rotary: the rotary embedding of queries and keys (shared by all layers), or None.
        feed_forward_dropout: dropout on the feed-forward's inner activations; None = ``dropout`` (BERT: 0).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        attention_dropout: float,
        activation: Activation,
        norm_first: bool,
        layer_norm_eps: float,
        backend: AttentionBackend,
        attention: AttentionPattern = "full",
        window: int | None = None,
        global_tokens: tuple[int, ...] = (0,),
        *,
        norm: str = "layernorm",
        n_kv_heads: int | None = None,
        bias: bool = True,
        rotary: RotaryPositionEmbedding | None = None,
        feed_forward_dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, backend, attention, window,
                                            global_tokens, n_kv_heads=n_kv_heads, bias=bias, rotary=rotary)
        inner_dropout = dropout if feed_forward_dropout is None else feed_forward_dropout
        self.feed_forward = PositionwiseFeedForward(d_model, d_ff, inner_dropout, activation, bias=bias)
        self.norm1 = make_norm(norm, d_model, layer_norm_eps)
        self.norm2 = make_norm(norm, d_model, layer_norm_eps)
        self.dropout = Dropout(dropout)  # on every token's sublayer output: the cheaper mask pays

    def forward(
        self, x: Tensor, src_mask: Tensor | None, need_weights: bool = False, packed: Packed | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Shape: x: (B, S, C), src_mask: (B, 1, 1, S) -> (B, S, C), weights (B, H, S, S) or None; with
        ``packed``, x: (N, C) -> (N, C) and no mask (``src/components/packing.py``)."""
        attend = {"mask": src_mask, "need_weights": need_weights, "packed": packed}
        if self.norm_first:
            attended, weights = self.self_attn(self.norm1(x), **attend)
            x = x + self.dropout(attended)
            x = x + self.dropout(self.feed_forward(self.norm2(x)))
        else:
            attended, weights = self.self_attn(x, **attend)
            x = self.norm1(x + self.dropout(attended))
            x = self.norm2(x + self.dropout(self.feed_forward(x)))
        return x, weights


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder output, feed-forward (Sec. 3.1).

    Args: as ``EncoderLayer``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        attention_dropout: float,
        activation: Activation,
        norm_first: bool,
        layer_norm_eps: float,
        backend: AttentionBackend,
        attention: AttentionPattern = "full",
        window: int | None = None,
        global_tokens: tuple[int, ...] = (0,),
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, backend, attention, window,
                                            global_tokens)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, backend)
        self.feed_forward = PositionwiseFeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None,
        tgt_mask: Tensor | None = None,
        self_cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Causal self-attention (Sec. 3.2.3), further restricted by ``tgt_mask`` if given.

        Shape:
            x: (B, T, C); memory: (B, S, C); memory_mask: (B, 1, 1, S); tgt_mask: broadcastable to
            (B, H, T, L) with L = cached + T positions.
            output: (B, T, C); weights: (B, H, T, L) and (B, H, T, S), or None.
        """
        self_kw = {"mask": tgt_mask, "is_causal": True, "cache": self_cache, "need_weights": need_weights}
        cross_kw = {"mask": memory_mask, "cache": cross_cache, "need_weights": need_weights}
        if self.norm_first:
            attended, self_weights = self.self_attn(self.norm1(x), **self_kw)
            x = x + self.dropout(attended)
            attended, cross_weights = self.cross_attn(self.norm2(x), memory, **cross_kw)
            x = x + self.dropout(attended)
            x = x + self.dropout(self.feed_forward(self.norm3(x)))
        else:
            attended, self_weights = self.self_attn(x, **self_kw)
            x = self.norm1(x + self.dropout(attended))
            attended, cross_weights = self.cross_attn(x, memory, **cross_kw)
            x = self.norm2(x + self.dropout(attended))
            x = self.norm3(x + self.dropout(self.feed_forward(x)))
        return x, self_weights, cross_weights


class Encoder(nn.Module):
    """A stack of N encoder layers (Sec. 3.1), then ``norm`` if given (required by pre-norm).

    Args:
        layers: the encoder layers, applied in order.
        norm: final LayerNorm, or None.
    """

    def __init__(self, layers: Iterable[EncoderLayer], norm: nn.LayerNorm | None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm

    def forward(
        self, x: Tensor, src_mask: Tensor | None, need_weights: bool = False, packed: Packed | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """Shape: x: (B, S, C) embedded source, src_mask: (B, 1, 1, S) -> memory (B, S, C), layer weights;
        with ``packed`` (when ``packs``), x: (N, C) real tokens -> (N, C)."""
        weights = []
        for layer in self.layers:
            x, layer_weights = layer(x, src_mask, need_weights, packed)
            if need_weights:
                weights.append(layer_weights)
        return (x if self.norm is None else self.norm(x)), weights

    @property
    def packs(self) -> bool:
        """Whether every layer's self-attention takes packed rows (``MultiHeadAttention.packs``)."""
        return all(layer.self_attn.packs for layer in self.layers)


class Decoder(nn.Module):
    """A stack of N decoder layers (Sec. 3.1), then ``norm`` if given (required by pre-norm).

    Args:
        layers: the decoder layers, applied in order.
        norm: final LayerNorm, or None.
    """

    def __init__(self, layers: Iterable[DecoderLayer], norm: nn.LayerNorm | None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None,
        tgt_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Shape: x: (B, T, C) embedded target, memory: (B, S, C) -> (B, T, C), self and cross weights."""
        self_weights, cross_weights = [], []
        for i, layer in enumerate(self.layers):
            self_cache, cross_cache = (
                (None, None) if cache is None else (cache.self_attn[i], cache.cross_attn[i])
            )
            x, self_w, cross_w = layer(
                x, memory, memory_mask, tgt_mask, self_cache, cross_cache, need_weights
            )
            if need_weights:
                self_weights.append(self_w)
                cross_weights.append(cross_w)
        return (x if self.norm is None else self.norm(x)), self_weights, cross_weights
