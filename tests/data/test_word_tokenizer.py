"""The word tokenizer: the training words (ListOps symbols), whitespace round trip, unknown words, the cap."""

import pytest

from src.data.listops import END, OPERATORS, generate_listops
from src.data.special_tokens import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID
from src.data.tokenizer import load_tokenizer
from src.data.word_tokenizer import train_word
from src.training.probe import readable_labels

LISTOPS = [e.text for e in generate_listops(200, min_length=20, max_length=100, max_depth=5, seed=0)]


@pytest.fixture(scope="module")
def listops_tokenizer(tmp_path_factory):
    return load_tokenizer(train_word(LISTOPS, tmp_path_factory.mktemp("word") / "tokenizer.json",
                                     vocab_size=100))


def test_listops_vocabulary_is_its_symbols_after_the_specials(listops_tokenizer):
    vocab = listops_tokenizer.get_vocab()
    assert [vocab[t] for t in SPECIAL_TOKENS] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
    assert set(vocab) - set(SPECIAL_TOKENS) == {*OPERATORS, END, *map(str, range(10))}


def test_one_id_per_word_and_the_text_back(listops_tokenizer):
    for text in LISTOPS[:50]:
        ids = listops_tokenizer.encode(text).ids
        assert len(ids) == len(text.split()) and UNK_ID not in ids
        assert listops_tokenizer.decode([BOS_ID, *ids, EOS_ID]) == text
    assert listops_tokenizer.decode(listops_tokenizer.encode(" [MAX  2\n9 ] ").ids) == "[MAX 2 9 ]"


def test_unseen_words_are_unk(listops_tokenizer):
    ids = listops_tokenizer.encode("[MAX 2 [FIRST 3 ] ]").ids
    assert ids[2] == UNK_ID and ids.count(UNK_ID) == 1


def test_vocab_size_keeps_the_most_frequent_words(tmp_path):
    tokenizer = load_tokenizer(train_word(["the the the film film café"], tmp_path / "t.json", vocab_size=6))
    assert set(tokenizer.get_vocab()) == {*SPECIAL_TOKENS, "the", "film"}
    rare = load_tokenizer(train_word(["the the film"], tmp_path / "u.json", vocab_size=50, min_frequency=2))
    assert set(rare.get_vocab()) == {*SPECIAL_TOKENS, "the"}


def test_heatmap_labels_are_the_words_themselves(tmp_path):
    tokenizer = load_tokenizer(train_word(["[MAX 2 café ]"], tmp_path / "t.json", vocab_size=50))
    labels = readable_labels(tokenizer, [BOS_ID, *tokenizer.encode("[MAX 2 café ]").ids])
    assert labels == ["<s>", "[MAX", "2", "café", "]"]  # not bytes: "é" whole


def test_a_vocabulary_of_specials_alone_is_refused():
    from src.config.data import TokenizerConfig

    with pytest.raises(ValueError, match=r"a word vocabulary needs more \(expected > 4, got 4\)"):
        TokenizerConfig(kind="word", vocab_size=4)
