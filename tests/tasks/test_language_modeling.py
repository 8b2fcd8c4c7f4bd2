"""The language-modelling task: windows, bpc against a hand computation, full coverage, the probe."""

import math

import pytest
import torch
from torch import nn

from src.data.char_tokenizer import char_tokenizer
from src.data.special_tokens import BOS_ID
from src.tasks.language_modeling.task import (LanguageModelingTask, LanguageModelProbe, TokenStream,
                                              decode_stream,
                                         encode_stream, lm_metrics, score_stream)


class Uniform(nn.Module):
    """Every next token equally likely among V: loss ln V per token."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab, self.weight = vocab, nn.Parameter(torch.zeros(1))

    def forward(self, tokens, cache=None, return_attention=False):
        return torch.zeros(*tokens.shape, self.vocab) + self.weight


class Bigram(nn.Module):
    """Logits from the current token alone (random): a model whose loss differs from token to token."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, tokens, cache=None, return_attention=False):
        return self.table(tokens)


def test_bpc_by_hand():
    # 3 tokens at 0.5, 1.0 and 1.5 nats over 6 characters: loss 1.0, bpc = 3.0 / 6 / ln 2
    metrics = lm_metrics(0.5 + 1.0 + 1.5, 3, 6)
    assert metrics["loss"] == pytest.approx(1.0)
    assert metrics["perplexity"] == pytest.approx(math.e)
    assert metrics["bpc"] == pytest.approx(3.0 / 6 / math.log(2))
    assert metrics["bpc"] == pytest.approx(0.7213475, abs=1e-6)


def test_windows_of_block_plus_one_at_stride_block():
    stream = TokenStream(torch.arange(11), characters=10, block_size=3)
    assert len(stream) == 3  # (11 - 1) // 3
    inputs, targets = stream.batch([0, 2], torch.device("cpu"))
    assert inputs.tolist() == [[0, 1, 2], [6, 7, 8]] and targets.tolist() == [[1, 2, 3], [7, 8, 9]]
    task = LanguageModelingTask(stream, stream, vocab_size=11, batch_size=2)
    assert task.lengths() == ([1, 1, 1], [1, 1, 1])
    assert task.targets((inputs, targets)) == task.tokens((inputs, targets)) == 6


def test_scoring_predicts_every_token_after_bos_once():
    # 1 + 10 tokens, block 3: 3 full windows (9 predictions) and a tail of 1; uniform over 7 -> ln 7 each
    stream = TokenStream(torch.randint(0, 7, (11,)), characters=10, block_size=3)
    metrics = score_stream(Uniform(7), stream, batch_size=2, device=torch.device("cpu"))
    assert metrics["loss"] == pytest.approx(math.log(7))
    assert metrics["bpc"] == pytest.approx(10 * math.log(7) / 10 / math.log(2))


def test_at_character_level_bpc_is_loss_over_ln2():
    tokenizer = char_tokenizer("abc \n")
    text = "ab c\n\ncab\n\nba"
    ids, characters = encode_stream(tokenizer, text)
    # every document starts with <s>, which stands for the blank line between documents
    assert ids == [BOS_ID, *tokenizer.encode("ab c").ids, BOS_ID, *tokenizer.encode("cab").ids,
                   BOS_ID, *tokenizer.encode("ba").ids]
    assert decode_stream(tokenizer, ids) == text
    assert characters == len(ids) - 1 == len("ab c" + "cab" + "ba") + 2  # one per predicted token
    torch.manual_seed(0)
    stream = TokenStream(torch.tensor(ids), characters, block_size=4)
    metrics = score_stream(Bigram(tokenizer.get_vocab_size()), stream, 3, torch.device("cpu"))
    assert metrics["bpc"] == pytest.approx(metrics["loss"] / math.log(2))


def test_loss_is_next_token_cross_entropy():
    stream = TokenStream(torch.randint(0, 5, (9,)), characters=8, block_size=4)
    task = LanguageModelingTask(stream, stream, vocab_size=5, batch_size=2)
    loss, n = task.loss(Uniform(5), task.batch([0, 1], torch.device("cpu")), 0.0)
    assert n == 8 and loss.item() == pytest.approx(math.log(5))


def test_validation_prefix_keeps_its_share_of_characters():
    stream = TokenStream(torch.arange(101), characters=400, block_size=10)
    assert stream.prefix(51).characters == 200 and stream.prefix(None) is stream


def test_probe_logs_a_heatmap_per_prompt_and_a_samples_table():
    from src.config import ModelConfig
    from src.models.decoder_lm import build_decoder_lm

    tokenizer = char_tokenizer("abcdefgh \n")
    model = build_decoder_lm(ModelConfig(family="decoder_lm", d_model=16, n_heads=2, n_decoder_layers=2,
                                         d_ff=32,
                                         max_positions=32), tokenizer.get_vocab_size(), 0)
    probe = LanguageModelProbe.from_text("abc def\n\ngh a", tokenizer, True, n_prompts=2, prompt_tokens=5,
                                         max_new_tokens=6)
    assert [probe.decode(p) for p in probe.prompts] == ["abc ", "gh a"]

    class Tracker:
        def __init__(self):
            self.figures, self.tables = [], []

        def log_figure(self, title, series, figure, step):
            self.figures.append((title, series, step))

        def log_table(self, title, series, table, step):
            self.tables.append((title, table, step))

    tracker = Tracker()
    probe.report(model, tracker, 7)
    assert tracker.figures == [("attention/decoder_self", "prompt 0", 7)]
    (title, table, step), = tracker.tables
    assert title == "samples" and step == 7 and list(table["prompt"]) == ["abc ", "gh a"]
    # specials decode to nothing
    assert all(isinstance(text, str) and len(text) <= 6 for text in table["greedy"])
    assert model.training
