"""The encoder-decoder Transformer of Vaswani et al. 2017, "Attention Is All You Need" (Fig. 1).

Reading order: ``build_model`` wires a ``ModelConfig`` onto the modules; ``forward`` is
``encode`` then ``decode`` then ``generator``. The pieces live in ``src/components`` (attention,
feed-forward, embeddings, masks) and ``src/models/layers.py`` (layers and stacks); masks follow
``src/components/masks.py`` (boolean, True = may attend).
"""

from torch import Tensor, nn

from src.components.attention import MultiHeadAttention
from src.components.embeddings import Embeddings
from src.components.kv_cache import DecoderCache
from src.components.masks import padding_mask
from src.components.positional_encoding import (LearnedPositionalEncoding, PositionsInAttention,
                                                SinusoidalPositionalEncoding)
from src.components.rms_norm import make_norm
from src.components.rotary_position_embedding import RotaryPositionEmbedding
from src.config.model import ModelConfig
from src.models.inputs import check_same_batch, check_token_ids
from src.models.layers import Decoder, DecoderLayer, Encoder, EncoderLayer

AttentionMaps = dict[str, list[Tensor]]


class EncoderDecoderTransformer(nn.Module):
    """Embeddings, encoder stack, decoder stack and a linear generator over the target vocabulary.

    Parameter names group by ``embeddings``, ``encoder.layers.{i}``, ``decoder.layers.{i}`` and
    ``generator``. With ``tie_output`` the generator's weight is the target embedding table
    (Sec. 3.4), so it is listed once, under ``embeddings``.

    Args:
        embeddings: token + positional embeddings of both sides.
        encoder: encoder stack.
        decoder: decoder stack.
        generator: final linear layer d_model -> target vocabulary (softmax is left to the loss).
        pad_id: padding token id; padding masks are derived from it.
        tie_output: share the generator weight with the target embedding.
    """

    def __init__(
        self,
        embeddings: Embeddings,
        encoder: Encoder,
        decoder: Decoder,
        generator: nn.Linear,
        pad_id: int,
        tie_output: bool,
    ) -> None:
        super().__init__()
        self.embeddings, self.encoder, self.decoder, self.generator = embeddings, encoder, decoder, generator
        self.pad_id = pad_id
        self.d_model = generator.in_features
        self.max_positions = embeddings.positional.max_positions
        self._reset_parameters()
        if tie_output:
            self.generator.weight = self.embeddings.tgt.weight

    def forward(
        self, src: Tensor, tgt: Tensor, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, AttentionMaps]:
        """Next-token logits for every target position (teacher forcing).

        Args:
            src: source token ids, padded with ``pad_id``.
            tgt: decoder input, already shifted right (starts with BOS), padded with ``pad_id``.
            return_attention: also return per-layer attention weights, keyed "encoder_self",
                "decoder_self" and "cross" (computed with the math path; for inspection, not training).

        Shape:
            src: (B, S); tgt: (B, T) -> logits (B, T, V); weights (B, H, S, S), (B, H, T, T), (B, H, T, S).

        Raises:
            ValueError: if src or tgt is not a (B, L) integer tensor, or their batch sizes differ.
        """
        check_token_ids("src", src)
        check_token_ids("tgt", tgt)
        check_same_batch(src, tgt)
        attention: AttentionMaps | None = {} if return_attention else None
        memory, src_mask = self.encode(src, attention)
        logits = self.generator(self.decode(tgt, memory, src_mask, attention=attention))
        return (logits, attention) if return_attention else logits

    def encode(self, src: Tensor, attention: AttentionMaps | None = None) -> tuple[Tensor, Tensor]:
        """Run the encoder once per source; the result feeds every decoding step.

        Args:
            src: source token ids.
            attention: if a dict is given, its "encoder_self" entry receives per-layer weights.

        Shape:
            src: (B, S) -> memory: (B, S, C), src_mask: (B, 1, 1, S) boolean, True at real tokens.
        """
        check_token_ids("src", src)
        src_mask = padding_mask(src, self.pad_id)
        memory, weights = self.encoder(
            self.embeddings.source(src), src_mask, need_weights=attention is not None
        )
        if attention is not None:
            attention["encoder_self"] = weights
        return memory, src_mask

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src_mask: Tensor,
        cache: DecoderCache | None = None,
        attention: AttentionMaps | None = None,
    ) -> Tensor:
        """Decoder hidden states; ``self.generator`` turns them into logits.

        Target padding needs no mask of its own: padding comes after the real tokens, so the causal
        mask already hides every pad key from every real query, and outputs at pad positions are
        ignored by the loss. Skipping it lets decoder self-attention use SDPA's fused causal path.

        Args:
            tgt: target token ids; with a ``cache``, only the new ones (usually one per sequence).
            memory, src_mask: the output of ``encode``.
            cache: from ``new_cache()``; filled and extended in place.
            attention: if a dict is given, its "decoder_self" and "cross" entries receive weights.

        Shape:
            tgt: (B, T); memory: (B, S, C); src_mask: (B, 1, 1, S) -> (B, T, C).
        """
        check_token_ids("tgt", tgt)
        x = self.embeddings.target(tgt, start=0 if cache is None else cache.length)
        need_weights = attention is not None
        x, self_weights, cross_weights = self.decoder(
            x, memory, src_mask, cache=cache, need_weights=need_weights
        )
        if attention is not None:
            attention["decoder_self"], attention["cross"] = self_weights, cross_weights
        return x

    def step_logits(self, tgt: Tensor, memory: Tensor, src_mask: Tensor,
                    cache: DecoderCache | None) -> Tensor:
        """Next-token logits at the last target position: one decoding step (``decode``, then ``generator``).

        Shape:
            tgt: (B, T), the new tokens with a cache, else the whole prefix -> (B, V).
        """
        # (B, T, C) -> (B, C) -> (B, V)
        return self.generator(self.decode(tgt, memory, src_mask, cache)[:, -1])

    def new_cache(self) -> DecoderCache:
        """An empty key/value cache for incremental decoding with ``decode``."""
        return DecoderCache(len(self.decoder.layers))

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of distinct parameters (a tied weight counts once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _reset_parameters(self) -> None:
        init_weights(self, self.d_model)


def init_weights(model: nn.Module, d_model: int) -> None:
    """Xavier-uniform linear weights, zero biases, embeddings drawn from N(0, 1/d_model).

    Embeddings are multiplied by sqrt(d_model) (Sec. 3.4). With the PyTorch default N(0, 1)
    they would then have a std of sqrt(d_model) = 16 at d_model = 256; queries and keys
    inherit that scale, the scores Q K^T / sqrt(d_k) reach a std in the hundreds, and the
    softmax saturates: near one-hot weights, vanishing gradients, and exp() underflowing into
    denormals that make CPU training ~20% slower. With std d_model^-0.5 the scaled embeddings
    have unit variance, like the LayerNorm outputs every later sublayer sees, and a tied
    generator produces logits of unit variance. Xavier (Glorot and Bengio 2010) keeps the
    variance of activations through each linear layer; the (3C, C) attention input
    projection gets it per (C, C) block, as W^Q, W^K, W^V are separate matrices in the paper.
    """
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=d_model**-0.5)
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:  # model.bias: false
                nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            # (C + 2 G C/H, C) -> W^Q (C, C), W^K and W^V (G C/H, C) each (G = H: multi-head)
            sizes = [module.d_model, module.kv_width, module.kv_width]
            for block in module.in_proj.weight.split(sizes):
                nn.init.xavier_uniform_(block)


def build_model(
    cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, pad_id: int
) -> EncoderDecoderTransformer:
    """The one place where configuration meets modules.

    Args:
        cfg: model hyperparameters.
        src_vocab_size, tgt_vocab_size: vocabulary sizes; equal when ``cfg.share_embeddings``.
        pad_id: padding token id.
    """
    embeddings = build_embeddings(cfg, src_vocab_size, tgt_vocab_size, share=cfg.share_embeddings)
    encoder = build_encoder(cfg)
    decoder = Decoder(
        [DecoderLayer(**layer_arguments(cfg)) for _ in range(cfg.n_decoder_layers)], _final_norm(cfg)
    )
    generator = nn.Linear(cfg.d_model, tgt_vocab_size)
    return EncoderDecoderTransformer(
        embeddings, encoder, decoder, generator, pad_id, tie_output=cfg.tie_output
    )


def build_embeddings(cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, share: bool) -> Embeddings:
    """Token tables and the configured positional encoding (Sec. 3.4-3.5); RoPE adds none (it rotates
    inside attention, ``build_encoder``)."""
    tables = {"sinusoidal": SinusoidalPositionalEncoding, "learned": LearnedPositionalEncoding}
    table = tables.get(cfg.positional_encoding)
    positional = (table(cfg.d_model, cfg.max_positions) if table is not None
                  else PositionsInAttention(cfg.max_positions))
    return Embeddings(src_vocab_size, tgt_vocab_size, cfg.d_model, positional, cfg.dropout, share=share,
                      type_vocab_size=cfg.type_vocab_size,
                      norm_eps=cfg.layer_norm_eps if cfg.embedding_norm else None)


def layer_arguments(cfg: ModelConfig) -> dict:
    """What every encoder and decoder layer is built with."""
    return {
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "d_ff": cfg.d_ff,
        "dropout": cfg.dropout,
        "attention_dropout": cfg.attention_dropout,
        "activation": cfg.activation,
        "norm_first": cfg.norm_first,
        "layer_norm_eps": cfg.layer_norm_eps,
        "backend": cfg.attention_backend,
        "attention": cfg.attention,
        "window": cfg.window,
        "global_tokens": cfg.global_tokens,
    }


def build_encoder(cfg: ModelConfig) -> Encoder:
    """``n_encoder_layers`` encoder layers, then a final norm where the config needs one.

    The encoder also takes the modern blocks (the encoder classifier's switches): RMSNorm, rotary
    positions shared by every layer, grouped-query attention and no biases.
    """
    rotary = (RotaryPositionEmbedding(cfg.d_model // cfg.n_heads, cfg.max_positions, cfg.rope_base)
              if cfg.positional_encoding == "rope" else None)
    modern = {"norm": cfg.norm, "n_kv_heads": cfg.n_kv_heads, "bias": cfg.bias, "rotary": rotary,
              "feed_forward_dropout": cfg.feed_forward_dropout}
    return Encoder([EncoderLayer(**layer_arguments(cfg), **modern) for _ in range(cfg.n_encoder_layers)],
                   _final_norm(cfg))


def _final_norm(cfg: ModelConfig) -> nn.Module | None:
    enabled = cfg.norm_first if cfg.final_norm is None else cfg.final_norm  # pre-norm needs it
    return make_norm(cfg.norm, cfg.d_model, cfg.layer_norm_eps) if enabled else None
