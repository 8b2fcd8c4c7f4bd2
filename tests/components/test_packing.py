"""Packed batches (``src/components/packing.py``): the encoder on the real tokens alone equals the padded
encoder at every real token, forward and backward; padding rows come back as zeros; the cheaper dropout mask
drops at the asked rate and keeps the mean."""

import pytest
import torch

from src.components import dropout as fast_dropout
from src.components.packing import Packed
from src.config.model import ModelConfig
from src.models.encoder_classifier import build_encoder_classifier

PAD = 0


def padded_texts() -> torch.Tensor:
    """Five texts, two of the same length side by side (attended together), one without padding."""
    torch.manual_seed(2)
    tokens = torch.randint(1, 50, (5, 13))
    for row, length in enumerate((13, 6, 6, 9, 1)):
        tokens[row, length:] = PAD
    return tokens


def classifier(**keys) -> torch.nn.Module:
    cfg = ModelConfig(family="encoder_classifier", d_model=32, n_heads=4, n_encoder_layers=2, d_ff=64,
                      dropout=0.0, max_positions=16, **keys)
    torch.manual_seed(0)
    return build_encoder_classifier(cfg, vocab_size=50, n_classes=3, pad_id=PAD).eval()


def gradients(loss: torch.Tensor, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_packed_encoder_equals_the_padded_one_at_every_real_token():
    model = classifier()
    tokens = padded_texts()
    assert model.encoder.packs
    packed_hidden, mask, _ = model.hidden_states(tokens)
    padded_hidden, _, weights = model.hidden_states(tokens, need_weights=True)  # the padded path
    assert len(weights) == 2
    torch.testing.assert_close(packed_hidden[mask], padded_hidden[mask], atol=1e-5, rtol=0)
    assert (packed_hidden[~mask] == 0).all()
    packed_logits = model(tokens)
    padded_logits, _ = model(tokens, return_attention=True)
    torch.testing.assert_close(packed_logits, padded_logits, atol=1e-5, rtol=0)
    # backward too: the same loss through either path gives every weight the same gradient
    packed_grads = gradients(packed_hidden[mask].square().sum(), model)
    padded_grads = gradients(padded_hidden[mask].square().sum(), model)
    assert packed_grads.keys() == padded_grads.keys() and "embeddings.src.weight" in packed_grads
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-4, rtol=1e-4, msg=name)


def test_a_batch_without_padding_is_packed_by_a_reshape():
    tokens = torch.randint(1, 50, (3, 7))
    packed = Packed.from_mask(tokens != PAD)
    assert packed.index is None and packed.lengths == (7, 7, 7)
    x = torch.randn(3, 7, 5)
    assert packed.pack(x).data_ptr() == x.data_ptr() and torch.equal(packed.unpack(packed.pack(x)), x)


def test_rotary_or_math_backends_keep_the_padded_path():
    assert not classifier(attention_backend="math").encoder.packs
    assert not classifier(positional_encoding="rope").encoder.packs


def test_cheap_dropout_drops_at_the_rate_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(1_000_000)
    out = fast_dropout.dropout(x, 0.1)
    assert abs((out == 0).float().mean().item() - 0.1) < 2e-3
    assert abs(out.mean().item() - 1.0) < 3e-3  # kept elements scaled by 1 / (1 - p)
    torch.manual_seed(0)
    assert torch.equal(fast_dropout.dropout(x, 0.1), out)  # the default generator: seeds repeat it
    assert fast_dropout.dropout(x, 0.1, training=False) is x and fast_dropout.dropout(x, 0.0) is x
    with pytest.raises(ValueError, match=r"in \[0, 1\), got p=1.0"):
        fast_dropout.dropout(x, 1.0)
