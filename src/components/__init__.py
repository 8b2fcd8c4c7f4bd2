"""Building blocks of the Transformer, named after the paper's nouns (Vaswani et al. 2017), and the later
blocks of today's models (rotary positions, ALiBi, RMSNorm, grouped-query attention)."""

from src.components.alibi import alibi_bias, alibi_slopes
from src.components.attention import MultiHeadAttention, scaled_dot_product_attention
from src.components.embeddings import Embeddings
from src.components.feed_forward import PositionwiseFeedForward
from src.components.kv_cache import DecoderCache, KVCache
from src.components.masks import causal_mask, padding_mask, to_torch_mask
from src.components.positional_encoding import (
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
    sinusoidal_table,
)
from src.components.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from src.components.rms_norm import RMSNorm
from src.components.rotary_position_embedding import RotaryPositionEmbedding

__all__ = [
    "DecoderCache",
    "Embeddings",
    "GRU",
    "GRUCell",
    "KVCache",
    "LSTM",
    "LSTMCell",
    "LearnedPositionalEncoding",
    "MultiHeadAttention",
    "PositionwiseFeedForward",
    "RMSNorm",
    "RNN",
    "RNNCell",
    "RotaryPositionEmbedding",
    "SinusoidalPositionalEncoding",
    "alibi_bias",
    "alibi_slopes",
    "causal_mask",
    "padding_mask",
    "scaled_dot_product_attention",
    "sinusoidal_table",
    "to_torch_mask",
]
