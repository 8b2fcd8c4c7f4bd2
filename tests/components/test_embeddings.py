import math

import pytest
import torch

from src.components.embeddings import Embeddings
from src.components.positional_encoding import SinusoidalPositionalEncoding, sinusoidal_table


def _embeddings(share: bool = True, src_vocab: int = 11, tgt_vocab: int = 11) -> Embeddings:
    return Embeddings(src_vocab, tgt_vocab, 8, SinusoidalPositionalEncoding(8, 16), dropout=0.0, share=share)


def test_tokens_are_scaled_by_sqrt_d_model_then_positions_added():
    embeddings = _embeddings()
    tokens = torch.tensor([[3, 4, 5]])
    expected = embeddings.src(tokens) * math.sqrt(8) + sinusoidal_table(16, 8)[2:5]
    torch.testing.assert_close(embeddings.target(tokens, start=2), expected)


def test_shared_and_separate_tables():
    shared, separate = _embeddings(share=True), _embeddings(share=False, tgt_vocab=7)
    assert shared.src is shared.tgt
    assert separate.src is not separate.tgt and separate.tgt.num_embeddings == 7


def test_sharing_needs_equal_vocabularies():
    with pytest.raises(ValueError, match=r"src_vocab_size=11 and tgt_vocab_size=7"):
        _embeddings(share=True, tgt_vocab=7)


def test_float_token_ids_are_rejected():
    with pytest.raises(ValueError, match=r"torch\.long.*torch\.float32"):
        _embeddings().source(torch.tensor([[1.0, 2.0]]))
