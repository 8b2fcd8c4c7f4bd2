"""The character tokenizer: special ids, round trip with spaces and newlines, unseen characters,
serialisation."""

from tokenizers import Tokenizer

from src.data.char_tokenizer import char_labels, train_char
from src.data.special_tokens import BOS_ID, EOS_ID, PAD_ID, UNK_ID

TRAIN = ["It is a truth universally acknowledged,\n\nthat a single man", "naïve café  — ok?"]


def test_round_trip_of_seen_characters_with_spaces_and_newlines(tmp_path):
    tokenizer = Tokenizer.from_file(str(train_char(TRAIN, tmp_path / "tokenizer.json")))
    text = "a single  man,\n\nnaïve\ncafé — truth?"
    ids = tokenizer.encode(text).ids
    assert len(ids) == len(text) and UNK_ID not in ids
    assert tokenizer.decode(ids) == text
    assert [tokenizer.token_to_id(t) for t in ("<pad>", "<s>", "</s>", "<unk>")] == [PAD_ID, BOS_ID, EOS_ID,
                                                                                     UNK_ID]
    assert tokenizer.get_vocab_size() == 4 + len(set("".join(TRAIN)))


def test_unseen_characters_are_unk_and_specials_are_skipped(tmp_path):
    tokenizer = Tokenizer.from_file(str(train_char(TRAIN, tmp_path / "tokenizer.json")))
    ids = tokenizer.encode("aZ").ids
    assert ids[1] == UNK_ID
    assert tokenizer.decode([BOS_ID, *ids, EOS_ID]) == "a"


def test_rare_characters_can_be_left_out_and_labels_show_whitespace(tmp_path):
    tokenizer = Tokenizer.from_file(str(train_char(["aab \n"], tmp_path / "t.json", min_frequency=2)))
    assert tokenizer.get_vocab_size() == 5  # only "a"
    full = Tokenizer.from_file(str(train_char(["ab \n"], tmp_path / "u.json")))
    assert char_labels(full, full.encode("a \nb").ids) == ["a", "▁", "↵", "b"]
