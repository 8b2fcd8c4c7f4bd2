"""Each source format yields the same pairs; clear errors; bad rows are counted, never lost."""

import csv
import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from src.config.data import DataConfig
from src.data.prepare import prepare_corpus
from src.data.sources import ColumnError, read_hf, read_local

ROWS = [
    ("Guten Morgen!", "Good morning!"),
    ("Die Straße ist nass, sagt er.", "The street is wet, he says."),
    ("Über\tMaß", "Beyond measure"),  # a tab inside the text: fine in CSV/JSONL, not in TSV
    ("Schöne Grüße", "Kind regards"),
]
TSV_ROWS = [r for r in ROWS if "\t" not in r[0]]


def write_local(path, rows):
    """Write ``rows`` as de/en columns in the format given by the suffix."""
    suffix = path.suffix
    if suffix == ".tsv":
        path.write_text("de\ten\n" + "".join(f"{s}\t{t}\n" for s, t in rows), encoding="utf-8")
    elif suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows([("de", "en"), *rows])
    elif suffix == ".jsonl":
        path.write_text(
            "".join(json.dumps({"de": s, "en": t}, ensure_ascii=False) + "\n" for s, t in rows),
            encoding="utf-8",
        )
    elif suffix == ".parquet":
        pq.write_table(pa.table({"de": [s for s, _ in rows], "en": [t for _, t in rows]}), path)
    return path


def local_cfg(path, **kw) -> DataConfig:
    return DataConfig(source="local", local_path=str(path), src_column="de", tgt_column="en", **kw)


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl", ".parquet"])
def test_every_local_format_reads_the_same_pairs(tmp_path, suffix):
    rows = TSV_ROWS if suffix == ".tsv" else ROWS
    raw = read_local(local_cfg(write_local(tmp_path / f"c{suffix}", rows)))
    assert list(zip(raw.src, raw.tgt)) == rows
    assert raw.dropped.total() == 0


def test_jsonl_translation_records(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = [
        json.dumps({"id": i, "translation": {"de": s, "en": t}}, ensure_ascii=False)
        for i, (s, t) in enumerate(ROWS)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    raw = read_local(DataConfig(source="local", local_path=str(path)))
    assert list(zip(raw.src, raw.tgt)) == ROWS


def test_csv_quoting_keeps_commas_and_newlines(tmp_path):
    rows = [("Ja, gut.", 'He said "yes,\nfine".')]
    raw = read_local(local_cfg(write_local(tmp_path / "c.csv", rows)))
    assert list(zip(raw.src, raw.tgt)) == rows


def test_hf_dataset_with_translation_column(monkeypatch):
    calls = []

    def fake_load_dataset(name, config=None, split=None, **kw):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict({"translation": [{"de": s, "en": t} for s, t in ROWS]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    raw = read_hf(DataConfig(source="hf", hf_name="wmt/fake", hf_config="de-en", hf_split="train"))
    assert calls == [("wmt/fake", "de-en", "train")]
    assert list(zip(raw.src, raw.tgt)) == ROWS


def test_hf_dataset_plain_columns_reversed_direction(monkeypatch):
    table = {"german": [s for s, _ in ROWS], "english": [t for _, t in ROWS]}
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_dict(table))
    cfg = DataConfig(
        source="hf", hf_name="x", src_lang="en", tgt_lang="de", src_column="english", tgt_column="german"
    )
    raw = read_hf(cfg)
    assert list(zip(raw.tgt, raw.src)) == ROWS


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl", ".parquet"])
def test_unknown_column_lists_the_columns_that_exist(tmp_path, suffix):
    path = write_local(tmp_path / f"c{suffix}", TSV_ROWS)
    cfg = DataConfig(source="local", local_path=str(path), src_column="source", tgt_column="en")
    with pytest.raises(ColumnError, match=r"\['source'\].*columns \['de', 'en'\]"):
        read_local(cfg)


def test_no_mapping_says_what_to_set(tmp_path):
    path = write_local(tmp_path / "c.parquet", ROWS)
    with pytest.raises(ColumnError, match=r"translation_column='translation'.*src_column"):
        read_local(DataConfig(source="local", local_path=str(path)))


def test_translation_dict_without_the_languages(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"translation": {"fr": "oui", "en": "yes"}}) + "\n", encoding="utf-8")
    with pytest.raises(ColumnError, match=r"languages \['en', 'fr'\], expected keys 'de' and 'en'"):
        read_local(DataConfig(source="local", local_path=str(path)))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_local(local_cfg(tmp_path / "nope.tsv"))


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "c.xml"
    path.write_text("<x/>")
    with pytest.raises(ValueError, match=r"'\.xml'.*\.tsv"):
        read_local(local_cfg(path))


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_non_utf8_rows_are_skipped_and_counted(tmp_path, suffix):
    path = write_local(tmp_path / f"c{suffix}", TSV_ROWS)
    bad = "Grüße".encode("latin-1")
    if suffix == ".jsonl":
        bad_line = b'{"de": "' + bad + b'", "en": "greetings"}\n'
    else:
        bad_line = bad + (b"\t" if suffix == ".tsv" else b",") + b"greetings\n"
    path.write_bytes(path.read_bytes() + bad_line)
    card = prepare_corpus(local_cfg(path, valid_fraction=0.0, test_fraction=0.0), tmp_path / "out")
    assert card["dropped"] == {"not_utf8": 1}
    assert card["kept_rows"] == len(TSV_ROWS)
    assert card["input_rows"] == len(TSV_ROWS) + 1


def test_malformed_rows_are_counted(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"de": "Ja.", "en": "Yes."}\nnot json\n[1, 2]\n{"de": null, "en": "No."}\n', encoding="utf-8"
    )
    card = prepare_corpus(local_cfg(path, valid_fraction=0.0, test_fraction=0.0), tmp_path / "out")
    assert card["dropped"] == {"malformed_row": 2, "not_text": 1}
    assert card["input_rows"] == 4 == card["kept_rows"] + card["dropped_rows"]


def test_max_rows_limits_what_is_read(tmp_path):
    path = write_local(tmp_path / "c.csv", ROWS)
    assert len(read_local(local_cfg(path, max_rows=2)).src) == 2
