"""``model.family`` picks the model; the classifiers ignore padding and learn; wrong sizes are named."""

import pytest
import torch

from src.models.builders import build
from src.models.encoder_classifier import EncoderClassifier
from src.models.rnn_classifier import RNNClassifier
from src.models.transformer import EncoderDecoderTransformer
from tests.models.token_texts import fit_accuracy

CLASSIFIERS = ["encoder_classifier", "lstm_classifier", "gru_classifier", "rnn_classifier"]
SIZES = {"vocab_size": 20, "n_classes": 3, "pad_id": 0}


def test_each_family_builds_its_model(tiny_config):
    assert isinstance(build(tiny_config, src_vocab_size=20, tgt_vocab_size=20, pad_id=0),
                      EncoderDecoderTransformer)
    assert isinstance(build(tiny_config.model_copy(update={"family": "encoder_classifier"}), **SIZES),
                      EncoderClassifier)
    for family in ("lstm_classifier", "gru_classifier", "rnn_classifier"):
        assert isinstance(build(tiny_config.model_copy(update={"family": family}), **SIZES), RNNClassifier)


def test_missing_sizes_are_named(tiny_config):
    with pytest.raises(ValueError, match=r"model.family='lstm_classifier' needs sizes the task did not give: "
                                         r"'n_classes' \(the task gave \['pad_id', 'vocab_size'\]\)"):
        build(tiny_config.model_copy(update={"family": "lstm_classifier"}), vocab_size=20, pad_id=0)


@pytest.mark.parametrize("family", CLASSIFIERS)
@pytest.mark.parametrize("fast", [True, False])
def test_padding_does_not_change_a_classifiers_logits(tiny_config, family, fast):
    torch.manual_seed(0)
    model = build(tiny_config.model_copy(update={"family": family, "rnn_fast": fast}), **SIZES).eval()
    tokens = torch.tensor([[1, 5, 6, 7, 0, 0], [1, 8, 9, 10, 11, 12]])
    padded = torch.cat([tokens, torch.zeros(2, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model(tokens), model(padded), atol=1e-5)
        assert torch.allclose(model(tokens)[:1], model(tokens[:1, :4]), atol=1e-5)


@pytest.mark.parametrize("family", ["lstm_classifier", "gru_classifier", "rnn_classifier"])
def test_the_recurrent_classifiers_learn_whether_a_token_occurs(tiny_config, family):
    torch.manual_seed(0)
    model = build(tiny_config.model_copy(update={"family": family}), vocab_size=20, n_classes=2, pad_id=0)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(2, 20, (128, 8), generator=g)
    tokens[tokens == 7] = 8
    labels = torch.randint(0, 2, (128,), generator=g)
    tokens[labels == 1, torch.randint(0, 8, (int(labels.sum()),), generator=g)] = 7
    assert fit_accuracy(model, tokens, labels, steps=100, lr=1e-2) > 0.95
