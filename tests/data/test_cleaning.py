"""Normalisation, drop reasons, the counts invariant and the stability of the hash split."""

import random
import unicodedata

import pytest

from src.config.data import DataConfig
from src.data.cleaning import (
    SPLITS,
    CleanPairs,
    assign_splits,
    clean_pairs,
    drop_reason,
    normalize_text,
    split_of,
)


def test_normalize_nfc_and_whitespace():
    decomposed = unicodedata.normalize("NFD", "Größe  \t Übermaß\u00a0ist\nschön\u200b ")
    assert decomposed != unicodedata.normalize("NFC", decomposed)
    assert normalize_text(decomposed) == "Größe Übermaß ist schön"


@pytest.mark.parametrize(
    ("src", "tgt", "reason"),
    [
        (None, "x", "not_text"),
        ("Gr\udcfc\udcdfe", "greetings", "not_utf8"),
        ("", "Hello", "empty"),
        ("a" * 301, "a" * 300, "too_long"),
        ("Ja", "Yes, of course I will", "length_ratio"),
        ("Guten Tag", "Good day", None),
    ],
)
def test_drop_reason(src, tgt, reason):
    assert drop_reason(src, tgt, DataConfig()) == reason


def test_too_short_uses_min_chars():
    assert drop_reason("Ja", "Yes", DataConfig(min_chars=3)) == "too_short"


def test_duplicates_after_normalisation_are_dropped():
    nfd = unicodedata.normalize("NFD", "Schöne Grüße")
    out = clean_pairs(
        ["Schöne Grüße", nfd + "  ", "Schöne Grüße"],
        ["Kind regards", "Kind regards", "Regards"],
        DataConfig(),
    )
    assert list(zip(out.src, out.tgt)) == [("Schöne Grüße", "Kind regards"), ("Schöne Grüße", "Regards")]
    assert dict(out.dropped) == {"duplicate": 1}


def random_rows(n: int, seed: int) -> tuple[list, list]:
    rng = random.Random(seed)
    pool = [
        "",
        "  ",
        None,
        "Ja",
        "Guten Morgen, Frau Müller!",
        "x" * 400,
        "Gr\udcfc\udcdfe",
        "Straße",
        "Maße  sind",
    ]
    src = [rng.choice(pool) if rng.random() < 0.5 else f"Satz Nummer {rng.randrange(n)}." for _ in range(n)]
    tgt = [
        rng.choice(pool) if rng.random() < 0.3 else f"Sentence number {rng.randrange(n)}." for _ in range(n)
    ]
    return src, tgt


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_row_is_kept_or_counted(seed):
    src, tgt = random_rows(2000, seed)
    out = clean_pairs(src, tgt, DataConfig())
    assert len(out) + out.dropped.total() == len(src)
    assert len(set(zip(out.src, out.tgt))) == len(out)
    assert all(drop_reason(s, t, DataConfig()) is None for s, t in zip(out.src, out.tgt))


def test_split_fractions_roughly_match_config():
    cfg = DataConfig(valid_fraction=0.1, test_fraction=0.2)
    counts = {name: 0 for name in SPLITS}
    for i in range(20_000):
        counts[split_of(f"Satz {i}.", cfg)] += 1
    assert counts["validation"] / 20_000 == pytest.approx(0.1, abs=0.01)
    assert counts["test"] / 20_000 == pytest.approx(0.2, abs=0.01)


def test_adding_rows_never_moves_existing_rows():
    cfg = DataConfig(valid_fraction=0.2, test_fraction=0.2)
    old = CleanPairs(src=[f"Alter Satz {i}." for i in range(500)], tgt=[f"Old {i}." for i in range(500)])
    new = CleanPairs(
        src=[f"Neuer Satz {i}." for i in range(700)] + old.src,
        tgt=[f"New {i}." for i in range(700)] + old.tgt,
    )
    before, after = assign_splits(old, cfg), assign_splits(new, cfg)
    where_after = {s: name for name in SPLITS for s in after[name].src}
    assert all(where_after[s] == name for name in SPLITS for s in before[name].src)
    assert min(len(before[name]) for name in SPLITS) > 50


def test_split_depends_on_salt_and_source_only():
    a, b = DataConfig(split_salt="a", test_fraction=0.5), DataConfig(split_salt="b", test_fraction=0.5)
    sources = [f"Satz {i}." for i in range(200)]
    assert [split_of(s, a) for s in sources] == [split_of(s, a) for s in sources]
    assert [split_of(s, a) for s in sources] != [split_of(s, b) for s in sources]
