"""The BERT-like encoder classifier: padding-invariant, masked pooling, it learns, clear errors."""

import pytest
import torch

from src.models.encoder_classifier import build_encoder_classifier, pool
from tests.models.token_texts import PAD, fit_accuracy, texts


@pytest.fixture(params=["cls", "mean"])
def model(request, tiny_config):
    torch.manual_seed(0)
    return build_encoder_classifier(
        tiny_config, vocab_size=20, n_classes=3, pad_id=PAD, pooling=request.param).eval()


def test_padding_does_not_change_a_texts_logits(model):
    tokens = texts([5, 9, 3], width=9)
    padded = torch.cat([tokens, torch.full((3, 7), PAD)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model(tokens), model(padded), atol=1e-5)
        alone = model(tokens[2:, :3])  # the short text without anyone else's padding
    assert torch.allclose(model(tokens)[2:], alone, atol=1e-5)


def test_attention_gives_padding_no_weight_and_rows_sum_to_one(model):
    tokens = texts([4, 9], width=9)
    with torch.no_grad():
        logits, weights = model(tokens, return_attention=True)
    assert logits.shape == (2, 3) and len(weights) == 2  # tiny_config: 2 encoder layers
    for layer in weights:  # (B, H, T, T)
        assert torch.allclose(layer.sum(-1), torch.ones_like(layer.sum(-1)), atol=1e-5)
        assert (layer[0, :, :, 4:] == 0).all()  # the first text's padded keys


def test_mean_pooling_averages_only_real_tokens():
    hidden = torch.arange(12.0).view(1, 4, 3)
    mask = torch.tensor([[True, True, False, False]])
    assert torch.equal(pool(hidden, mask, "mean"), hidden[0, :2].mean(0, keepdim=True))
    assert torch.equal(pool(hidden, mask, "cls"), hidden[:, 0])


def test_it_learns_whether_a_token_occurs(tiny_config):
    """Label 1 when token 7 occurs anywhere: needs attention across positions, not only the first one."""
    torch.manual_seed(0)
    model = build_encoder_classifier(tiny_config, vocab_size=20, n_classes=2, pad_id=PAD, pooling="cls")
    tokens = texts([8] * 128, width=8)
    tokens[:, 1:][tokens[:, 1:] == 7] = 8
    labels = torch.randint(0, 2, (128,), generator=torch.Generator().manual_seed(2))
    where = torch.randint(1, 8, (128,), generator=torch.Generator().manual_seed(3))
    tokens[labels == 1, where[labels == 1]] = 7
    accuracy = fit_accuracy(model, tokens, labels, steps=150, lr=3e-3)
    assert accuracy > 0.95, accuracy


def test_bad_arguments_are_named(tiny_config):
    with pytest.raises(ValueError, match="at least 2 classes, got n_classes=1"):
        build_encoder_classifier(tiny_config, vocab_size=20, n_classes=1, pad_id=PAD)
    with pytest.raises(ValueError, match="pooling must be 'cls' or 'mean', got 'max'"):
        build_encoder_classifier(tiny_config, vocab_size=20, n_classes=2, pad_id=PAD, pooling="max")
    model = build_encoder_classifier(tiny_config, vocab_size=20, n_classes=2, pad_id=PAD)
    with pytest.raises(ValueError, match=r"tokens must be a 2-D \(batch, length\) tensor.*got shape \(5,\)"):
        model(torch.ones(5, dtype=torch.long))
