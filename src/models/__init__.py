"""The encoder-decoder Transformer, its decoding algorithms and its bridge to ``torch.nn.Transformer``."""

from src.models.transformer import EncoderDecoderTransformer, build_model

__all__ = ["EncoderDecoderTransformer", "build_model"]
