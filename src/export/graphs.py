"""Exportable wrappers: each model family as a module whose inputs and outputs are plain tensors.

The PyTorch decoders keep their key/value caches as Python lists of ``KVCache`` objects
(``src/components/kv_cache.py``), which an ONNX graph cannot take. The wrappers here turn one
stacked tensor into that cache, call the model's own ``encode`` / ``decode`` / ``forward``, and
stack the result back; none of the model's maths is written twice.

Stacked cache layout, batch first so that beam search's ``repeat_interleave(k, dim=0)`` and
``index_select(0, ...)`` work on it unchanged:

    kv: (B, 2L, H, T, D/H), row 2i the keys and row 2i+1 the values of decoder layer i.

Letters: B batch, S source length, T cached target positions, N new tokens, L decoder layers,
H heads, D d_model, V vocabulary, K classes.
"""

import torch
from torch import Tensor, nn

from src.components.kv_cache import KVCache
from src.models.decoder_lm import DecoderLM
from src.models.transformer import EncoderDecoderTransformer


def stack_kv(caches: list[KVCache]) -> Tensor:
    """Shape: L caches of (B, H, T, D/H) keys and values -> (B, 2L, H, T, D/H)."""
    return torch.stack([t for cache in caches for t in (cache.key, cache.value)], dim=1)


def fill_kv(caches: list[KVCache], stacked: Tensor) -> None:
    """Set each cache's keys and values from a stacked (B, 2L, H, T, D/H) tensor (the inverse of ``stack_kv``)."""
    for i, cache in enumerate(caches):
        cache.key, cache.value = stacked[:, 2 * i], stacked[:, 2 * i + 1]  # (B, H, T, D/H) each


class EncoderGraph(nn.Module):
    """``encoder.onnx``: source ids -> every decoder layer's cross-attention keys/values, and the source mask.

    The cross-attention keys and values depend on the encoder output only, so they are computed
    once per source here (the decoder layers' own projection fills an empty cache) instead of at
    every decoding step.

    Shape:
        src: (B, S) -> cross_kv: (B, 2L, H, S, D/H), src_mask: (B, 1, 1, S) boolean.
    """

    def __init__(self, model: EncoderDecoderTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: Tensor) -> tuple[Tensor, Tensor]:
        memory, src_mask = self.model.encode(src)
        cache = self.model.new_cache()
        for layer, kv in zip(self.model.decoder.layers, cache.cross_attn, strict=True):
            # the layer's own W^K, W^V projection, the same method that fills the cross cache at the first
            # PyTorch decoding step, not a copy of it
            kv.append(*layer.cross_attn.memory_keys_values(memory))
        return stack_kv(cache.cross_attn), src_mask


class DecoderStepGraph(nn.Module):
    """``decoder_step.onnx``: one new target token per row, the cross and past caches -> its logits, present cache.

    Exported with one token per row (``exporter.graph_specs`` traces (B, 1) and declares only the batch
    axis dynamic): decoding feeds one token per step.

    Shape:
        tokens: (B, 1); cross_kv: (B, 2L, H, S, D/H); src_mask: (B, 1, 1, S);
        past_kv: (B, 2L, H, T, D/H), T = 0 on the first step -> logits (B, V), present_kv (B, 2L, H, T+1, D/H).
    """

    def __init__(self, model: EncoderDecoderTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, cross_kv: Tensor, src_mask: Tensor, past_kv: Tensor) -> tuple[Tensor, Tensor]:
        cache = self.model.new_cache()
        fill_kv(cache.cross_attn, cross_kv)
        fill_kv(cache.self_attn, past_kv)
        # memory is only read to fill an empty cross-attention cache; this one is full, so cross_kv stands in
        logits = self.model.step_logits(tokens, cross_kv, src_mask, cache)
        return logits, stack_kv(cache.self_attn)


class DecoderLMGraph(nn.Module):
    """``decoder_lm.onnx``: one new token per row and the past cache -> its logits, the present cache.

    Exported with N = 1 (see ``exporter.graph_specs``); the ONNX Runtime model feeds a prompt token by token.

    Shape:
        tokens: (B, N); past_kv: (B, 2L, H, T, D/H), T = 0 at the start -> logits (B, N, V), present_kv (B, 2L, H, T+N, D/H).
    """

    def __init__(self, model: DecoderLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, past_kv: Tensor) -> tuple[Tensor, Tensor]:
        cache = self.model.new_cache()
        fill_kv(cache, past_kv)
        logits = self.model(tokens, cache)
        return logits, stack_kv(cache)


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

