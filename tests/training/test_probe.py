"""The probe's heatmaps: one figure per attention kind, the real subword tokens of the right side
on each axis (source for the encoder, target for the decoder, target x source for cross-attention)."""

import re

import numpy as np
import pytest
import torch
from datasets import Dataset

from src.config import ModelConfig, TokenizerConfig
from src.data.special_tokens import BOS, EOS, PAD_ID
from src.data.tokenizer import train_one
from src.models.transformer import build_model
from src.training.probe import AttentionProbe, token_labels

SOURCE = "Die Häuser sind größer als die Straße."
TARGET = "The houses are bigger than the street."


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from src.data.tokenizer import load_tokenizer

    rows = {"src": [SOURCE, "Das Haus ist groß.", "Die Straße ist schön."] * 20,
            "tgt": [TARGET, "The house is big.", "The street is nice."] * 20}
    path = train_one(Dataset.from_dict(rows), ["src", "tgt"],
                     TokenizerConfig(vocab_size=300, min_frequency=2),
                     tmp_path_factory.mktemp("tok") / "tokenizer.json")
    return load_tokenizer(path)


def _labels(ticks) -> list[str]:
    return [tick.get_text() for tick in ticks]


def _as_text(labels: list[str]) -> str:
    """The sentence back from its labels: hex labels of split characters dropped, "▁" as space."""
    return "".join(label for label in labels if not re.fullmatch(r"(<[0-9a-f]{2}>)+", label)).replace(
        "▁", " ").strip()


def test_token_labels_decode_bytes_and_mark_word_starts(tokenizer):
    ids = tokenizer.encode(SOURCE, add_special_tokens=False).ids
    raw = [tokenizer.id_to_token(i) for i in ids]
    labels = token_labels(tokenizer, ids)
    assert len(labels) == len(ids) and all(labels)
    assert _as_text(labels) == SOURCE  # "ä", "ö", "ß" as themselves, not byte-level "Ã¤"
    assert "Ã" not in "".join(labels) and "Ġ" not in "".join(labels)
    # word starts
    assert [label.startswith("▁") for label in labels] == [token.startswith("Ġ") for token in raw]
    assert sum(label.startswith("▁") for label in labels) == len(SOURCE.split())
    split = [label for label in labels if re.fullmatch(r"(<[0-9a-f]{2}>)+", label)]
    assert all(label == "<c3>" for label in split)  # the lead byte of ä/ö/ß when BPE kept it apart


def test_each_kind_has_its_own_tokens_on_each_axis(tokenizer):
    src = tokenizer.encode(SOURCE, add_special_tokens=False).ids + [tokenizer.token_to_id(EOS)]
    tgt = [tokenizer.token_to_id(BOS), *tokenizer.encode(TARGET, add_special_tokens=False).ids,
           tokenizer.token_to_id(EOS)]
    probe = AttentionProbe.from_ids([src], [tgt], tokenizer, tokenizer)
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, n_heads=2, n_encoder_layers=2, n_decoder_layers=3, d_ff=32, dropout=0.0)
    model = build_model(cfg, tokenizer.get_vocab_size(), tokenizer.get_vocab_size(), PAD_ID)
    figures = {title: (series, fig) for title, series, fig in probe.figures(model, 0)}
    assert set(figures) == {"attention/encoder_self", "attention/decoder_self", "attention/cross"}
    source_axis = _as_text(probe.src_tokens[0])
    target_axis = probe.tgt_tokens[0]
    # decoder input
    assert source_axis == SOURCE + "</s>" and target_axis[0] == BOS and EOS not in target_axis
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


LONG_SOURCE = " ".join([SOURCE, "Das Haus ist groß.", "Die Straße ist schön.", SOURCE])
LONG_TARGET = " ".join([TARGET, "The house is big.", "The street is nice.", TARGET])


def _ids(tokenizer, text: str, bos: bool) -> list[int]:
    ids = tokenizer.encode(text, add_special_tokens=False).ids + [tokenizer.token_to_id(EOS)]
    return [tokenizer.token_to_id(BOS), *ids] if bos else ids


def _model(tokenizer, n_layers: int = 3, n_heads: int = 4):
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, n_heads=n_heads, n_encoder_layers=n_layers, n_decoder_layers=n_layers,
                      d_ff=32, dropout=0.0)
    return build_model(cfg, tokenizer.get_vocab_size(), tokenizer.get_vocab_size(), PAD_ID)


class RecordingTracker:
    def __init__(self):
        self.figures = []

    def log_figure(self, title, series, figure, step):
        self.figures.append((title, series, figure, step))


def test_truncation_keeps_ids_and_labels_aligned_and_feeds_the_model_the_kept_ids(tokenizer):
    src, tgt = _ids(tokenizer, LONG_SOURCE, bos=False), _ids(tokenizer, LONG_TARGET, bos=True)
    assert len(src) > 30 and len(tgt) > 30
    probe = AttentionProbe.from_ids([src], [tgt], tokenizer, tokenizer, max_tokens=24)
    assert probe.src_ids[0] == src[:24] and probe.tgt_ids[0] == tgt[:-1][:24]
    assert probe.src_tokens[0] == token_labels(tokenizer, src[:24])  # label i names id i
    assert probe.tgt_tokens[0] == token_labels(tokenizer, tgt[:24])
    assert (probe.src_lengths[0], probe.tgt_lengths[0]) == (len(src), len(tgt) - 1)
    model = _model(tokenizer)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append([a.tolist() for a in args[:2]]))
    figures = {title: fig for title, _, fig in probe.figures(model, 0, step=7)}
    assert seen == [[[src[:24]], [tgt[:-1][:24]]]]
    panels = [ax for ax in figures["attention/cross"].axes if ax.get_visible() and "head " in ax.get_title()]
    assert _labels(panels[0].get_yticklabels()) == probe.tgt_tokens[0]
    assert _labels(panels[-1].get_xticklabels()) == probe.src_tokens[0]
    title = figures["attention/cross"].texts[0].get_text()
    assert f"first 24 of {len(src)} source tokens" in title
    assert f"first 24 of {len(tgt) - 1} target tokens" in title


def test_title_names_the_kind_the_step_and_the_source_sentence(tokenizer):
    src, tgt = _ids(tokenizer, SOURCE, bos=False), _ids(tokenizer, TARGET, bos=True)
    long_src = _ids(tokenizer, LONG_SOURCE, bos=False)
    probe = AttentionProbe.from_ids([src, long_src], [tgt, tgt], tokenizer, tokenizer)
    assert probe.src_text == [SOURCE, LONG_SOURCE]  # decoded without </s>
    tracker = RecordingTracker()
    probe.report(_model(tokenizer, n_layers=1, n_heads=2), tracker, 600)
    titles = {(title, series): figure.texts[0].get_text() for title, series, figure, step in tracker.figures}
    assert {step for *_, step in tracker.figures} == {600}
    expected = f'encoder_self attention · step 600 · "{SOURCE}"'
    assert titles[("attention/encoder_self", "sentence 0")] == expected
    long_title = titles[("attention/cross", "sentence 1")]
    first_line, note = long_title.split("\n")
    quoted = first_line.split(" · ")[2]
    assert first_line.startswith("cross attention · step 600 · ")
    assert quoted.endswith('…"') and len(quoted) <= 62 and LONG_SOURCE.startswith(quoted[1:-2])
    assert "source tokens" in note and "target tokens" not in note  # only the source was cut


def test_heatmaps_stay_readable_and_grow_with_tokens_up_to_the_cap(tokenizer):
    src, tgt = _ids(tokenizer, LONG_SOURCE, bos=False), _ids(tokenizer, TARGET, bos=True)
    model = _model(tokenizer)
    sizes = {}
    for n in (8, 16, 24, 32):
        probe = AttentionProbe.from_ids([src[:n]], [tgt], tokenizer, tokenizer, max_tokens=24)
        figure = next(f for title, _, f in probe.figures(model, 0) if title == "attention/encoder_self")
        panels = [ax for ax in figure.axes if ax.get_visible() and "head " in ax.get_title()]
        assert len(panels) == 12  # 3 layers x 4 heads
        assert min(t.get_fontsize() for t in panels[-1].get_xticklabels() + panels[0].get_yticklabels()) >= 7
        n_shown = min(n, 24)
        cell = panels[0].get_position().width * figure.get_figwidth() / n_shown
        assert cell >= 0.2, f"{cell:.3f} in per token cell at {n_shown} tokens"
        sizes[n] = tuple(figure.get_size_inches())
    widths = [sizes[n][0] for n in (8, 16, 24)]
    assert widths == sorted(widths) and len(set(widths)) == 3  # grows with the tokens shown
    assert sizes[32][0] == sizes[24][0]  # capped: 32 tokens are cut to 24
