"""The byte tokenizer: one id per UTF-8 byte (4 + byte), exact round trip for any text, serialisation,
labels."""

import random

import pytest
from tokenizers import Tokenizer

from src.data.byte_tokenizer import N_BYTES, byte_symbols, byte_tokenizer, save_byte_tokenizer
from src.data.special_tokens import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID
from src.data.tokenizer import load_tokenizer
from src.training.probe import BYTE_OF_CHAR, readable_labels

TEXTS = [
    "A wonderful film.",
    "  leading and trailing spaces, double  space  ",
    "naïve café, Straße, Ελληνικά, русский, 日本語, עברית",
    "emoji 😀👍🏽 and a zero-width joiner 👩‍💻",
    "line one\nline two\r\n\ttabbed\x00nul",
    "decomposed e\u0301 stays decomposed",  # no normaliser: NFD text comes back as NFD
    "",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(save_byte_tokenizer(tmp_path_factory.mktemp("byte") / "tokenizer.json"))


@pytest.mark.parametrize("text", TEXTS)
def test_one_id_per_byte_and_the_exact_text_back(tokenizer, text):
    ids = tokenizer.encode(text).ids
    assert ids == [4 + b for b in text.encode("utf-8")]
    assert tokenizer.decode(ids) == text


def test_random_unicode_round_trips(tokenizer):
    rng = random.Random(0)
    planes = [(0x20, 0x7F), (0xA0, 0x2FF), (0x370, 0x52F), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF),
              (0, 0x10FFFF)]
    texts = []
    for _ in range(300):
        low, high = rng.choice(planes)
        chars = (chr(rng.randint(low, high)) for _ in range(rng.randint(1, 40)))
        # no lone surrogates in UTF-8
        texts.append("".join(c for c in chars if not 0xD800 <= ord(c) <= 0xDFFF))
    encoded = tokenizer.encode_batch_fast(texts)
    assert [tokenizer.decode(e.ids) for e in encoded] == texts
    assert [len(e.ids) for e in encoded] == [len(t.encode("utf-8")) for t in texts]


def test_fixed_vocabulary_with_the_special_ids_first(tokenizer):
    assert tokenizer.get_vocab_size() == len(SPECIAL_TOKENS) + N_BYTES == 260
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
    assert sorted(tokenizer.get_vocab().values()) == list(range(260))
    assert [BYTE_OF_CHAR[s] for s in byte_symbols()] == list(range(256))  # GPT-2's alphabet, byte order


def test_specials_are_skipped_and_the_json_is_the_whole_tokenizer(tokenizer):
    ids = tokenizer.encode("ok é").ids
    assert tokenizer.decode([BOS_ID, *ids, EOS_ID, PAD_ID]) == "ok é"
    again = Tokenizer.from_str(byte_tokenizer().to_str())  # what a checkpoint stores and loads
    assert again.encode("ok é").ids == ids and again.decode(ids) == "ok é"


def test_a_character_cut_in_half_decodes_without_error(tokenizer):
    ids = tokenizer.encode("é").ids  # two bytes
    assert len(ids) == 2 and tokenizer.decode(ids[:1]) == "\ufffd"


def test_heatmap_labels_show_characters_where_they_complete(tokenizer):
    ids = tokenizer.encode("a é").ids
    assert readable_labels(tokenizer, [BOS_ID, *ids]) == ["<s>", "a", "▁", "<c3>", "é"]
