"""The probe's heatmaps: one figure per attention kind, the real subword tokens of the right side
on each axis (source for the encoder, target for the decoder, target x source for cross-attention)."""

import re

import numpy as np
import pytest
import torch
from datasets import Dataset

from src.config import ModelConfig, TokenizerConfig
from src.data.tokenizer import BOS, EOS, PAD_ID, train_one
from src.models.transformer import build_model
from src.training.probe import AttentionProbe, token_labels

SOURCE = "Die Häuser sind größer als die Straße."
TARGET = "The houses are bigger than the street."


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from src.data.tokenizer import load_tokenizer

    rows = {"src": [SOURCE, "Das Haus ist groß.", "Die Straße ist schön."] * 20,
            "tgt": [TARGET, "The house is big.", "The street is nice."] * 20}
    path = train_one(Dataset.from_dict(rows), ["src", "tgt"], TokenizerConfig(vocab_size=300, min_frequency=2),
                     tmp_path_factory.mktemp("tok") / "tokenizer.json")
    return load_tokenizer(path)


def _labels(ticks) -> list[str]:
    return [tick.get_text() for tick in ticks]


def _as_text(labels: list[str]) -> str:
    """The sentence back from its labels: hex labels of split characters dropped, "▁" as space."""
    return "".join(label for label in labels if not re.fullmatch(r"(<[0-9a-f]{2}>)+", label)).replace("▁", " ").strip()


def test_token_labels_decode_bytes_and_mark_word_starts(tokenizer):
    ids = tokenizer.encode(SOURCE, add_special_tokens=False).ids
    raw = [tokenizer.id_to_token(i) for i in ids]
    labels = token_labels(tokenizer, ids)
    assert len(labels) == len(ids) and all(labels)
    assert _as_text(labels) == SOURCE  # "ä", "ö", "ß" as themselves, not byte-level "Ã¤"
    assert "Ã" not in "".join(labels) and "Ġ" not in "".join(labels)
    assert [label.startswith("▁") for label in labels] == [token.startswith("Ġ") for token in raw]  # word starts
    assert sum(label.startswith("▁") for label in labels) == len(SOURCE.split())
    split = [label for label in labels if re.fullmatch(r"(<[0-9a-f]{2}>)+", label)]
    assert all(label == "<c3>" for label in split)  # the lead byte of ä/ö/ß when BPE kept it apart


def test_each_kind_has_its_own_tokens_on_each_axis(tokenizer):
    src = tokenizer.encode(SOURCE, add_special_tokens=False).ids + [tokenizer.token_to_id(EOS)]
    tgt = [tokenizer.token_to_id(BOS), *tokenizer.encode(TARGET, add_special_tokens=False).ids, tokenizer.token_to_id(EOS)]
    probe = AttentionProbe.from_ids([src], [tgt], tokenizer, tokenizer)
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, n_heads=2, n_encoder_layers=2, n_decoder_layers=3, d_ff=32, dropout=0.0)
    model = build_model(cfg, tokenizer.get_vocab_size(), tokenizer.get_vocab_size(), PAD_ID)
    figures = {title: (series, fig) for title, series, fig in probe.figures(model, 0)}
    assert set(figures) == {"attention/encoder_self", "attention/decoder_self", "attention/cross"}
    source_axis = _as_text(probe.src_tokens[0])
    target_axis = probe.tgt_tokens[0]
    assert source_axis == SOURCE + "</s>" and target_axis[0] == BOS and EOS not in target_axis  # decoder input
    expected = {  # (layers, query text, key text)
        "attention/encoder_self": (2, source_axis, source_axis),
        "attention/decoder_self": (3, _as_text(target_axis), _as_text(target_axis)),
        "attention/cross": (3, _as_text(target_axis), source_axis),
    }
    weights = probe.attention(model, 0)
    for title, (series, figure) in figures.items():
        n_layers, query_text, key_text = expected[title]
        assert series == "sentence 0"
        panels = [ax for ax in figure.axes if ax.get_visible() and "head " in ax.get_title()]
        assert len(panels) == n_layers * cfg.n_heads
        assert _as_text(_labels(panels[0].get_yticklabels())) == query_text
        assert _as_text(_labels(panels[-1].get_xticklabels())) == key_text
        kind = title.split("/")[1]
        last = np.asarray(panels[-1].collections[0].get_array()).reshape(weights[kind][-1].shape[1:])
        np.testing.assert_allclose(last, weights[kind][-1][-1].numpy(), rtol=1e-5)  # last layer, last head
