"""The masked LM is the encoder classifier's encoder under BERT's MLM head: the same parameter names and
shapes (its weights load into a classifier), an output projection tied to the token embedding, padding
ignored."""

import pytest
import torch
import torch.nn.functional as F

from src.models.builders import build
from src.models.masked_lm import EncoderMaskedLM

VOCAB = 40


def pair(config, **update):
    """The masked LM and the encoder classifier of one config."""
    cfg = config.model_copy(update={"dropout": 0.0, **update})
    mlm = build(cfg.model_copy(update={"family": "encoder_mlm"}), vocab_size=VOCAB, pad_id=0)
    classifier = build(cfg.model_copy(update={"family": "encoder_classifier"}), vocab_size=VOCAB, n_classes=2,
                       pad_id=0)
    return mlm.eval(), classifier.eval()


@pytest.mark.parametrize("update", [{}, {"norm_first": True}, {"positional_encoding": "learned"},
                                    {"positional_encoding": "rope", "norm": "rmsnorm", "n_kv_heads": 1}],
                         ids=["post-norm", "pre-norm", "learned", "modern"])
def test_its_encoder_loads_into_an_encoder_classifier_tensor_by_tensor(tiny_config, update):
    mlm, classifier = pair(tiny_config, **update)
    assert isinstance(mlm, EncoderMaskedLM)
    ours = {k: v.shape for k, v in mlm.state_dict().items() if not k.startswith("mlm_head.")}
    theirs = {k: v.shape for k, v in classifier.state_dict().items() if not k.startswith("head.")}
    assert ours == theirs
    result = classifier.load_state_dict(mlm.state_dict(), strict=False)
    assert {k.split(".")[0] for k in result.missing_keys} == {"head"}  # the classification head: new
    assert {k.split(".")[0] for k in result.unexpected_keys} == {"mlm_head"}
    tokens = torch.tensor([[1, 5, 6, 7, 8, 0]])
    mask = tokens.ne(0)[:, None, None, :]
    hidden = [model.encoder(model.embeddings.source(tokens), mask)[0] for model in (mlm, classifier)]
    torch.testing.assert_close(hidden[0], hidden[1], rtol=0, atol=0)


def test_the_head_is_berts_with_the_output_projection_tied_to_the_embedding(tiny_config):
    mlm, _ = pair(tiny_config)
    tokens = torch.tensor([[1, 5, 6, 7, 8]])
    with torch.no_grad():
        mlm.mlm_head.bias.normal_()
        hidden, _ = mlm.encoder(mlm.embeddings.source(tokens), tokens.ne(0)[:, None, None, :])
        head = mlm.mlm_head
        normed = F.layer_norm(F.gelu(head.dense(hidden)), (hidden.shape[-1],), head.norm.weight,
                              head.norm.bias, head.norm.eps)
        expected = normed @ mlm.embeddings.src.weight.T + head.bias
        torch.testing.assert_close(mlm(tokens), expected)
    # one table for input and output: the head adds dense, LayerNorm and a bias, no (V, C) matrix of its own
    head_parameters = sum(p.numel() for p in mlm.mlm_head.parameters())
    d = tiny_config.d_model
    assert head_parameters == d * d + d + 2 * d + VOCAB
    mlm(tokens).sum().backward()
    grad = mlm.embeddings.src.weight.grad  # the tokens read (rows 5-8) and every output row (20 onwards)
    assert grad[5:9].abs().sum() > 0 and grad[20:].abs().sum() > 0


def test_selected_positions_equal_the_full_logits_there_and_padding_changes_nothing(tiny_config):
    mlm, _ = pair(tiny_config)
    tokens = torch.tensor([[1, 5, 6, 7, 0, 0], [1, 8, 9, 10, 11, 12]])
    select = torch.tensor([[0, 1, 0, 1, 0, 0], [0, 0, 1, 0, 0, 1]], dtype=torch.bool)
    with torch.no_grad():
        full = mlm(tokens)
        torch.testing.assert_close(mlm(tokens, select=select), full[select])
        alone = mlm(tokens[:1, :4])  # the first text without its padding
    torch.testing.assert_close(full[0, :4], alone[0], atol=1e-5, rtol=1e-5)
