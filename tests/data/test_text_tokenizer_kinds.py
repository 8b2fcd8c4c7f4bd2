"""The classification tokenize step's tokenizers: each kind made from the training texts, [CLS] first, cut
alike."""

import pytest
from datasets import Dataset

from src.config.data import TokenizerConfig
from src.data.special_tokens import CLS_ID, UNK_ID
from src.data.tokenizer import load_tokenizer, train_text_tokenizer
from src.tasks.classification.task import encode_texts

TRAIN = Dataset.from_dict({"text": ["a good film", "a bad film", "naïve plot", "the film was good"] * 3})


@pytest.mark.parametrize(("kind", "vocab_size", "tokens_of_naive"), [
    ("byte", 260, len("naïve".encode("utf-8"))),
    ("char", 4 + len(set("".join(TRAIN["text"]))), 5),
    ("word", 4 + 8, 1),  # a good film bad naïve plot the was
    ("bpe", None, None),
])
def test_each_kind_encodes_with_cls_first_and_cuts_at_the_limit(tmp_path, kind, vocab_size, tokens_of_naive):
    cfg = TokenizerConfig(kind=kind, vocab_size=300, min_frequency=1, max_tokens_per_sentence=8)
    tokenizer = load_tokenizer(train_text_tokenizer(TRAIN, cfg, tmp_path / "tokenizer.json"))
    if vocab_size is not None:
        assert tokenizer.get_vocab_size() == vocab_size
        assert len(tokenizer.encode("naïve").ids) == tokens_of_naive
    ids, truncated = encode_texts(tokenizer, ["naïve", "the film was good " * 4], cfg.max_tokens_per_sentence)
    assert all(row[0] == CLS_ID and UNK_ID not in row for row in ids)
    assert len(ids[1]) == 8 and truncated == 1
    assert tokenizer.decode(ids[0], skip_special_tokens=True) == "naïve"
