"""The model families on sliding-window and Longformer attention (``model.attention``).

The components are checked against dense references in tests/components; here the models: padding
still changes nothing, the decoder LM stays causal and its cache exact, the heatmaps show the band,
and global attention does what it is for (the [CLS] token sees the whole text in one layer).
"""

import pytest
import torch

from src.config import ModelConfig
from src.models.builders import build
from src.models.decoder_lm import build_decoder_lm
from src.models.encoder_classifier import build_encoder_classifier
from tests.models.token_texts import PAD, VOCAB, fit_accuracy, texts


def classifier_config(attention: str, window: int = 2, layers: int = 2) -> ModelConfig:
    return ModelConfig(family="encoder_classifier", d_model=32, n_heads=4, n_encoder_layers=layers, d_ff=64,
                       dropout=0.0, max_positions=64, attention=attention, window=window)


@pytest.mark.parametrize(("attention", "pooling"), [("sliding_window", "mean"), ("sliding_window", "cls"),
                                                    ("longformer", "cls"), ("longformer", "mean")])
def test_padding_does_not_change_a_texts_logits(attention, pooling):
    torch.manual_seed(0)
    model = build_encoder_classifier(classifier_config(attention), VOCAB, 3, PAD, pooling).eval()
    tokens = texts([5, 13, 3], width=13)  # 13 tokens, window 2: several blocks, the last one partial
    padded = torch.cat([tokens, torch.full((3, 10), PAD)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model(tokens), model(padded), atol=1e-5)
        assert torch.allclose(model(tokens)[2:], model(tokens[2:, :3]), atol=1e-5)


def test_heatmaps_show_the_band_and_the_global_token():
    torch.manual_seed(0)
    model = build_encoder_classifier(classifier_config("longformer"), VOCAB, 2, PAD, "cls").eval()
    with torch.no_grad():
        _, weights = model(texts([12], width=12), return_attention=True)
    layer = weights[0][0]  # (H, T, T)
    assert torch.allclose(layer.sum(-1), torch.ones(4, 12), atol=1e-5)
    assert (layer[:, 0, :] > 0).all() and (layer[:, :, 0] > 0).all()  # [CLS] sees and is seen by all
    i, j = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    outside = ((i - j).abs() > 2) & (i != 0) & (j != 0)
    assert (layer[:, outside] == 0).all()


def test_global_token_sees_the_whole_text_in_one_layer():
    """Label 1 when token 7 occurs anywhere in 24 tokens. With one layer of window 1 the [CLS] vector of
    a sliding window sees positions 0-1 only; Longformer's global [CLS] sees all 24."""
    tokens = texts([24] * 128, width=24, seed=1)
    tokens[:, 1:][tokens[:, 1:] == 7] = 8
    labels = torch.randint(0, 2, (128,), generator=torch.Generator().manual_seed(2))
    where = torch.randint(4, 24, (128,), generator=torch.Generator().manual_seed(3))
    tokens[labels == 1, where[labels == 1]] = 7
    accuracy = {}
    for attention in ("sliding_window", "longformer"):
        torch.manual_seed(0)
        model = build_encoder_classifier(classifier_config(attention, window=1, layers=1), VOCAB, 2, PAD,
                                         "cls")
        accuracy[attention] = fit_accuracy(model, tokens, labels, steps=80, lr=3e-3)
    assert accuracy["longformer"] > 0.95, accuracy
    assert accuracy["sliding_window"] < 0.75, accuracy  # near chance: the [CLS] cannot see position >= 4


@pytest.fixture
def sliding_lm():
    torch.manual_seed(0)
    cfg = ModelConfig(family="decoder_lm", d_model=32, n_heads=4, n_decoder_layers=2, d_ff=64, dropout=0.0,
                      max_positions=64, attention="sliding_window", window=3)
    return build_decoder_lm(cfg, 50, pad_id=0).eval()


def test_sliding_window_lm_sees_exactly_its_receptive_field(sliding_lm):
    """Two layers of window 3: the logits at t depend on the tokens t-6 .. t and on no other."""
    embedded = {}

    def keep(module, inputs, output):
        output.retain_grad()
        embedded["x"] = output

    hook = sliding_lm.token_embedding.register_forward_hook(keep)
    sliding_lm(torch.randint(0, 50, (1, 20)))[0, 12].sum().backward()
    hook.remove()
    reach = embedded["x"].grad[0].abs().sum(-1)  # (T,): how much each position moves the logits at 12
    assert (reach[6:13] > 0).all()
    assert (reach[:6] == 0).all() and (reach[13:] == 0).all()


def test_sliding_window_lm_cache_equals_one_full_pass(sliding_lm):
    tokens = torch.randint(0, 50, (2, 15))
    cache = sliding_lm.new_cache()
    with torch.no_grad():
        full = sliding_lm(tokens)
        pieces = [sliding_lm(tokens[:, :5], cache)] + [
            sliding_lm(tokens[:, t : t + 1], cache) for t in range(5, 15)]
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_longformer_has_global_projections_and_the_builder_passes_the_switch():
    model = build(classifier_config("longformer", window=4), vocab_size=VOCAB, n_classes=2, pad_id=PAD)
    attention = model.encoder.layers[0].self_attn
    assert (attention.attention, attention.window, attention.global_tokens) == ("longformer", 4, (0,))
    assert attention.global_in_proj.weight.shape == (96, 32)
    with pytest.raises(ValueError, match="not available for family='vit'"):
        ModelConfig(family="vit", attention="sliding_window", window=4)
