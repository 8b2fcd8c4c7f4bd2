"""Exportable wrappers: each model family as a module whose inputs and outputs are plain tensors.

The PyTorch decoders keep their key/value caches as Python lists of ``KVCache`` objects
(``src/components/kv_cache.py``), which an ONNX graph cannot take. The wrappers here take one
keys tensor and one values tensor per decoder layer as graph inputs, put them in that cache, call
the model's own ``encode`` / ``decode`` / ``forward``, and return the grown caches as outputs;
none of the model's maths is written twice.

Cache layout, one tensor per layer and side, as Hugging Face optimum lays out its decoders:

    past_key_i, past_value_i: (B, H, T, D/H) for decoder layer i (inputs ``past_key_0``, ``past_value_0``,
    ...)

A single stacked (B, 2L, H, T, D/H) tensor, the layout before export format 3, cost a Split of the
whole cache on the way in and a Concat of it on the way out at every step: at batch 32 ORT's profiler
put most of a decoder step in those copies (issue 30).

Letters: B batch, S source length, T cached target positions, N new tokens, L decoder layers,
H heads, D d_model, V vocabulary, K classes.
"""

from torch import Tensor, nn

from src.components.kv_cache import KVCache
from src.models.decoder_lm import DecoderLM
from src.models.transformer import EncoderDecoderTransformer


def kv_names(prefix: str, n_layers: int) -> tuple[str, ...]:
    """Graph input/output names of ``n_layers`` caches:
    ``prefix_key_0, prefix_value_0, prefix_key_1, ...``."""
    return tuple(f"{prefix}_{side}_{i}" for i in range(n_layers) for side in ("key", "value"))


def flat_kv(caches: list[KVCache]) -> tuple[Tensor, ...]:
    """L caches -> their 2L tensors (B, H, T, D/H) in ``kv_names`` order: keys 0, values 0, keys 1, ..."""
    return tuple(t for cache in caches for t in (cache.key, cache.value))


def fill_kv(caches: list[KVCache], tensors: tuple[Tensor, ...]) -> None:
    """Set each cache's keys and values from 2L tensors in ``kv_names`` order (the inverse of ``flat_kv``)."""
    if len(tensors) != 2 * len(caches):
        raise ValueError(f"expected {2 * len(caches)} cache tensors (keys and values of {len(caches)} "
                         f"layers), got {len(tensors)}")
    for i, cache in enumerate(caches):
        cache.key, cache.value = tensors[2 * i], tensors[2 * i + 1]


class EncoderGraph(nn.Module):
    """``encoder.onnx``: source ids -> the source mask and every decoder layer's cross-attention keys/values.

    The cross-attention keys and values depend on the encoder output only, so they are computed
    once per source here (the decoder layers' own projection fills an empty cache) instead of at
    every decoding step.

    Shape:
        src: (B, S) -> src_mask: (B, 1, 1, S) boolean, then cross_key_i, cross_value_i: (B, H, S, D/H) per
        layer.
    """

    def __init__(self, model: EncoderDecoderTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: Tensor) -> tuple[Tensor, ...]:
        memory, src_mask = self.model.encode(src)
        cache = self.model.new_cache()
        for layer, kv in zip(self.model.decoder.layers, cache.cross_attn, strict=True):
            # the layer's own W^K, W^V projection, the same method that fills the cross cache at the first
            # PyTorch decoding step, not a copy of it
            kv.append(*layer.cross_attn.memory_keys_values(memory))
        return src_mask, *flat_kv(cache.cross_attn)


class DecoderStepGraph(nn.Module):
    """``decoder_step.onnx``: one new target token per row, the cross and past caches -> its logits, present
    caches.

    Exported with one token per row (``exporter.graph_specs`` traces (B, 1) and declares only the batch
    axis dynamic): decoding feeds one token per step.

    Shape:
        tokens: (B, 1); src_mask: (B, 1, 1, S); then 2L cross_key_i, cross_value_i (B, H, S, D/H), then 2L
        past_key_i, past_value_i (B, H, T, D/H), T = 0 on the first step
        -> logits (B, V), then 2L present_key_i, present_value_i (B, H, T+1, D/H).
    """

    def __init__(self, model: EncoderDecoderTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, src_mask: Tensor, *kv: Tensor) -> tuple[Tensor, ...]:
        cache = self.model.new_cache()
        n = 2 * len(cache.cross_attn)
        fill_kv(cache.cross_attn, kv[:n])
        fill_kv(cache.self_attn, kv[n:])
        # memory is only read to fill an empty cross-attention cache; this one is full, so a key tensor stands
        # in
        logits = self.model.step_logits(tokens, kv[0], src_mask, cache)
        return logits, *flat_kv(cache.self_attn)


class DecoderLMGraph(nn.Module):
    """``decoder_lm.onnx``: one new token per row and the past cache -> its logits, the present cache.

    Exported with N = 1 (see ``exporter.graph_specs``); the ONNX Runtime model feeds a prompt token by token.

    Shape:
        tokens: (B, N); 2L past_key_i, past_value_i (B, H, T, D/H), T = 0 at the start
        -> logits (B, N, V), then 2L present_key_i, present_value_i (B, H, T+N, D/H).
    """

    def __init__(self, model: DecoderLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        cache = self.model.new_cache()
        fill_kv(cache, past)
        logits = self.model(tokens, cache)
        return logits, *flat_kv(cache)


class LogitsGraph(nn.Module):
    """Classifiers and ViT: the model's own forward, logits only.

    Shape:
        input: tokens (B, T) or images (B, C, H, W) -> logits (B, K).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor) -> Tensor:
        return self.model(inputs)

