"""The Ding line parser: annotations, alignment, alternatives, the sentence rule, drop counts."""

import pytest
from data_fixtures import DING_PHRASES, DING_READ_DROPS, DING_SENTENCES

from src.data.ding import field_pairs, is_sentence, parse_line, read_ding, strip_annotations


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Aal {m} [cook.] <Ahl>", "Aal"),
        ("Aale {pl}; Aalartige {pl} (Anguilliformes) (zoologische Ordnung)", "Aale; Aalartige"),
        ("A- und B-Horizont {m} (des (oberen) Bodenprofils) [agr.]", "A- und B-Horizont"),
        ("to seek {sought; sought} sth. (from sb.)", "to seek sth."),
        ("If you can’t behave (yourself) we’ll have to leave.", "If you can’t behave we’ll have to leave."),
        ("Das ist es (doch) .", "Das ist es."),
        ("NBC reconnaissance vehicle /NBCRV/; tank /T/ [Am.]", "NBC reconnaissance vehicle; tank"),
        ("to queue/line up", "to queue/line up"),
    ],
)
def test_strip_annotations(raw, expected):
    assert strip_annotations(raw) == expected


def test_parse_line_aligns_fields_and_splits_alternatives():
    fields = parse_line("Haus {n}; Gebäude {n} | Häuser {pl} :: house; building | houses")
    assert fields == [(["Haus", "Gebäude"], ["house", "building"]), (["Häuser"], ["houses"])]


@pytest.mark.parametrize(
    ("line", "reason"),
    [("kaputt {adj} | a | b :: broken | a", "field_count_mismatch"), ("no separator here", "malformed_line")],
)
def test_parse_line_reports_why_a_line_is_unusable(line, reason):
    assert parse_line(line) == reason


@pytest.mark.parametrize(
    ("text", "min_words", "expected"),
    [
        ("Er ist krank.", 2, True),
        ("Benimm dich!", 2, True),
        ("Wie spät ist es?", 2, True),
        ("„Halt!“", 1, True),
        ("Schrecklich!", 2, False),  # too few words
        ("er ist krank.", 2, False),  # lower-case start
        ("Dazu muss man sagen, dass …", 2, False),  # no final . ! ?
        ("Unmengen von etw.", 2, False),  # placeholder abbreviation, not a full stop
        ("to say sth.", 1, False),
    ],
)
def test_sentence_rule(text, min_words, expected):
    assert is_sentence(text, min_words) is expected


def test_field_pairs_combine_sentence_alternatives_else_one_phrase():
    sentences, _ = field_pairs(["Es regnet.", "Es gießt."], ["It rains.", "It pours."], min_words=2)
    assert len(sentences) == 4 and len(set(sentences)) == 4
    sentences, phrase = field_pairs(["Haus", "Gebäude"], ["house", "building"], min_words=2)
    assert sentences == [] and phrase == ("Haus", "house")


def test_read_ding_fixture(ding_file):
    pairs = read_ding(ding_file, min_words=2, with_phrases=True)
    assert pairs.sentences == DING_SENTENCES
    assert pairs.phrases == DING_PHRASES
    assert pairs.phrase_rows == len(DING_PHRASES)
    assert dict(pairs.dropped) == DING_READ_DROPS


def test_read_ding_counts_phrases_without_keeping_them(ding_file):
    pairs = read_ding(ding_file, min_words=2, with_phrases=False)
    assert pairs.phrases == [] and pairs.phrase_rows == len(DING_PHRASES)


def test_read_ding_output_has_no_annotation_characters(ding_file):
    pairs = read_ding(ding_file, with_phrases=True)
    for src, tgt in pairs.sentences + pairs.phrases:
        assert not set("{}[]<>()") & set(src + tgt), (src, tgt)
        assert src == src.strip() and "  " not in src


def test_missing_dictionary_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"sudo apt-get install trans-de-en"):
        read_ding(tmp_path / "absent")


def test_max_sentences_reads_a_prefix(ding_file):
    pairs = read_ding(ding_file, with_phrases=True, max_sentences=3)
    assert pairs.sentences == DING_SENTENCES[:3]
    assert pairs.phrases == DING_PHRASES[:4]  # the phrases of the lines read so far
