"""A decoder-only language model in the manner of GPT-2 (Radford et al. 2019, "Language Models are
Unsupervised Multitask Learners", Sec. 2.3).

Reading order: token embedding + positions -> dropout -> ``n_decoder_layers`` x ``DecoderBlock``
(pre-norm causal self-attention, then a position-wise feed-forward network) -> final LayerNorm ->
``lm_head``, whose weight is the token embedding table (``tie_output``). The pieces are the same
components as the translation model (``src/components``); only the wiring differs from
``src/models/layers.py``: a block has no cross-attention and always attends causally.

Differences from the Transformer of Vaswani et al. 2017, as GPT-2 has them:
- LayerNorm before each sublayer and once after the stack (GPT-2 Sec. 2.3, "moved to the input
  of each sub-block ... an additional layer normalization was added after the final block").
- Token embeddings are NOT multiplied by sqrt(d_model) (Vaswani Sec. 3.4 does): GPT-2 adds the
  position table to the raw token vectors, and its small N(0, 0.02) init keeps both on one scale.
- Init as GPT-2 / nanoGPT: every linear and embedding weight ~ N(0, 0.02), biases zero, and the
  projections that write into the residual stream (attention ``out_proj``, feed-forward
  ``linear2``) ~ N(0, 0.02 / sqrt(2 N)) so the residual's variance does not grow with depth N
  (GPT-2 Sec. 2.3: "scale the weights of residual layers at initialization by 1/sqrt(N)").
"""

import math

from torch import Tensor, nn

from src.components.attention import AttentionBackend, AttentionPattern, MultiHeadAttention
from src.components.feed_forward import Activation, PositionwiseFeedForward
from src.components.kv_cache import KVCache
from src.components.positional_encoding import (LearnedPositionalEncoding, PositionsInAttention,
                                                SinusoidalPositionalEncoding)
from src.components.rms_norm import RMSNorm, make_norm
from src.components.rotary_position_embedding import RotaryPositionEmbedding
from src.config.model import ModelConfig
from src.models.inputs import check_token_ids

INIT_STD = 0.02  # GPT-2's initializer_range


class DecoderBlock(nn.Module):
    """x = x + Dropout(CausalSelfAttention(LN(x))); x = x + Dropout(FFN(LN(x))) (pre-norm).

    Args:
        d_model: model width C.
        n_heads: attention heads H.
        d_ff: feed-forward inner width.
        dropout: residual and feed-forward dropout.
        attention_dropout: dropout on attention weights.
        activation: feed-forward activation (GPT-2: "gelu_tanh", Hugging Face's "gelu_new").
        layer_norm_eps: LayerNorm epsilon (GPT-2: 1e-5).
        backend: attention backend, "sdpa" or "math".
        attention: "full", or "sliding_window": each token sees only the ``window`` tokens before it.
        window: the sliding window's length (one-sided).
        norm: "layernorm" (GPT-2) or "rmsnorm" (Llama), before each sublayer.
        n_kv_heads: key/value heads (grouped-query attention); None = n_heads.
        bias: biases in attention and feed-forward (Llama has none).
        rotary: the rotary embedding applied to queries and keys (shared by all blocks), or None.
        alibi: ALiBi's distance bias on the attention scores.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, attention_dropout: float,
                 activation: Activation, layer_norm_eps: float, backend: AttentionBackend,
                 attention: AttentionPattern = "full", window: int | None = None, *,
                 norm: str = "layernorm", n_kv_heads: int | None = None, bias: bool = True,
                 rotary: RotaryPositionEmbedding | None = None, alibi: bool = False) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, d_model, layer_norm_eps)
        self.self_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, backend, attention, window,
                                            n_kv_heads=n_kv_heads, bias=bias, rotary=rotary, alibi=alibi)
        self.norm2 = make_norm(norm, d_model, layer_norm_eps)
        self.feed_forward = PositionwiseFeedForward(d_model, d_ff, dropout, activation, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Shape: x: (B, T, C) -> (B, T, C), weights (B, H, T, L) or None; L = cached + T positions."""
        attended, weights = self.self_attn(self.norm1(x), is_causal=True, cache=cache,
                                           need_weights=need_weights)
        x = x + self.dropout(attended)
        x = x + self.dropout(self.feed_forward(self.norm2(x)))
        return x, weights


class DecoderLM(nn.Module):
    """Next-token logits of a token sequence, optionally continuing from a key/value cache.

    Parameter names group by ``token_embedding``, ``positional``, ``decoder.layers.{i}``,
    ``norm`` and ``lm_head``; a tied ``lm_head`` is listed once, under ``token_embedding``.

    Args:
        vocab_size: tokenizer vocabulary size V.
        positional: a module from ``positional_encoding`` (``forward(x, start)``, ``max_positions``).
        blocks: the decoder blocks, applied in order.
        d_model: model width C.
        dropout: dropout on the embedded input.
        layer_norm_eps: epsilon of the final LayerNorm.
        pad_id: padding token id (kept for the loaders and decoders; windows of running text have none).
        tie_output: ``lm_head`` shares the token embedding's weight (GPT-2; Press & Wolf 2017).
        final_norm: the norm after the stack; None = LayerNorm (GPT-2). The Llama-shaped model
            (``src/models/llama.py``) passes an RMSNorm.
    """

    def __init__(self, vocab_size: int, positional: nn.Module, blocks: list[nn.Module], d_model: int,
                 dropout: float, layer_norm_eps: float, pad_id: int, tie_output: bool,
                 final_norm: nn.Module | None = None) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.positional = positional
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Module()
        self.decoder.layers = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps) if final_norm is None else final_norm
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.pad_id, self.max_positions = pad_id, positional.max_positions
        init_gpt2_weights(self, len(blocks))
        if tie_output:
            self.lm_head.weight = self.token_embedding.weight

    def forward(self, tokens: Tensor, cache: list[KVCache] | None = None,
                return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits for the next token at every position; with ``cache``, ``tokens`` continue the cached ones.

        Args:
            tokens: token ids; with a cache only the new ones (positions start at the cache length).
            cache: from ``new_cache()``; extended in place.
            return_attention: also return each layer's weights (math path; for inspection).

        Shape:
            tokens: (B, T) -> logits (B, T, V); weights: per layer (B, H, T, L), L = cached + T.
        """
        check_token_ids("tokens", tokens)
        # not len(): it would fix the length in an ONNX export
        start = 0 if cache is None else cache[0].length
        x = self.dropout(self.positional(self.token_embedding(tokens), start))  # no sqrt(C) scale (GPT-2)
        weights = []
        for i, block in enumerate(self.decoder.layers):
            x, layer_weights = block(x, None if cache is None else cache[i], return_attention)
            weights.append(layer_weights)
        logits = self.lm_head(self.norm(x))
        return (logits, weights) if return_attention else logits

    def new_cache(self) -> list[KVCache]:
        """One empty key/value cache per block, for incremental decoding."""
        return [KVCache() for _ in self.decoder.layers]

    def num_parameters(self) -> int:
        """Number of distinct parameters (a tied weight counts once)."""
        return sum(p.numel() for p in self.parameters())


def init_gpt2_weights(model: nn.Module, n_layers: int) -> None:
    """N(0, 0.02) weights, zero biases, residual projections N(0, 0.02 / sqrt(2 n_layers)) (module
    docstring)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    for name, parameter in model.named_parameters():
        if name.endswith(("self_attn.out_proj.weight", "feed_forward.linear2.weight")):
            nn.init.normal_(parameter, mean=0.0, std=INIT_STD / math.sqrt(2 * n_layers))


def build_decoder_lm(cfg: ModelConfig, vocab_size: int, pad_id: int) -> DecoderLM:
    """The one place where configuration meets the language model's modules.

    Args:
        cfg: model hyperparameters; ``n_decoder_layers`` deep, ``norm_first``/``final_norm`` unused
            (a GPT block is always pre-norm with a final LayerNorm).
        vocab_size: tokenizer vocabulary size.
        pad_id: padding token id.
    """
    tables = {"sinusoidal": SinusoidalPositionalEncoding, "learned": LearnedPositionalEncoding}
    table = tables.get(cfg.positional_encoding)
    positional = (table(cfg.d_model, cfg.max_positions) if table is not None
                  else PositionsInAttention(cfg.max_positions))  # rope, alibi: inside every attention
    rotary = (RotaryPositionEmbedding(cfg.d_model // cfg.n_heads, cfg.max_positions, cfg.rope_base)
              if cfg.positional_encoding == "rope" else None)
    blocks = [DecoderBlock(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.attention_dropout,
                           cfg.activation, cfg.layer_norm_eps, cfg.attention_backend, cfg.attention,
                           cfg.window,
                           norm=cfg.norm, n_kv_heads=cfg.n_kv_heads, bias=cfg.bias, rotary=rotary,
                           alibi=cfg.positional_encoding == "alibi") for _ in range(cfg.n_decoder_layers)]
    final_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps) if cfg.norm == "rmsnorm" else None
    return DecoderLM(vocab_size, positional, blocks, cfg.d_model, cfg.dropout, cfg.layer_norm_eps, pad_id,
                     cfg.tie_output, final_norm=final_norm)

