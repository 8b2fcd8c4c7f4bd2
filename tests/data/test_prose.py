"""The prose reader on small fixture files: Austen's R lazy-load database, Brown's tagged samples, local
text."""

import gzip
import json
import zlib

import numpy as np
import pytest

from src.config.data import DataConfig
from src.data import prose

NOVEL = ["EMMA", "", "By Jane Austen", "", "", "CHAPTER I", "", "Emma Woodhouse, handsome, clever,",
         "and rich, seemed to unite", "", "She was the youngest"]


def write_lazy_load_db(data_dir, novels: dict[str, list[str]]) -> None:
    """An R lazy-load database as janeaustenr ships it: objects in Rdata.rdb, their (offset, length) in
    Rdata.rdx."""
    import rdata

    data_dir.mkdir(parents=True)
    blobs, index, offset = b"", {}, 0
    for name, lines in novels.items():
        raw = rdata.unparser.unparse_data(rdata.conversion.convert_python_to_r_data(np.array(lines)))
        blob = len(raw).to_bytes(4, "big") + zlib.compress(raw)
        index[name] = np.array([offset, len(blob)], dtype=np.int32)
        blobs, offset = blobs + blob, offset + len(blob)
    (data_dir / "Rdata.rdb").write_bytes(blobs)
    rdx = {"variables": index, "references": {}, "compressed": np.array([True])}
    (data_dir / "Rdata.rdx").write_bytes(gzip.compress(rdata.unparser.unparse_data(
        rdata.conversion.convert_python_to_r_data(rdx))))


BROWN_SAMPLE = ("\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' was/bedz found/vbn ./.\n\n\n"
                "\tIt/pps didn't/dod* (/( really/rb )/) matter/vb ,/, he/pps said/vbd ;/. "
                "`/` fine/jj '/' ?/.\n")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    write_lazy_load_db(tmp_path / prose.AUSTEN_DIR, {name: NOVEL for name in prose.AUSTEN_NOVELS})
    brown = tmp_path / prose.BROWN_DIR
    brown.mkdir(parents=True)
    for name in ("ca01", "cb02", "cr09"):
        (brown / name).write_text(BROWN_SAMPLE, encoding="utf-8")
    (brown / "README").write_text("not a sample")
    monkeypatch.setenv("STEPWISE_DATA_DIR", str(tmp_path))
    return tmp_path


def test_austen_lines_become_paragraphs(cache):
    lines = prose.read_austen_novel(cache / prose.AUSTEN_DIR, "emma")
    assert lines == NOVEL
    assert prose.paragraphs(lines) == ["EMMA", "By Jane Austen", "CHAPTER I",
                                       "Emma Woodhouse, handsome, clever, and rich, seemed to unite",
                                       "She was the youngest"]
    assert len(prose.read_austen(cache)) == 6 * 5


def test_brown_tags_are_stripped_and_text_detokenised(cache):
    docs = prose.read_brown(cache)
    assert len(docs) == 3  # the README is not a sample
    assert docs[0].text == ('The jury said "no evidence" was found. '
                            "It didn't (really) matter, he said; 'fine'?")


def test_max_rows_caps_each_corpus(cache):
    docs = prose.read_prose(DataConfig(source="prose", max_rows=2))
    assert [d.corpus for d in docs] == ["austen", "austen", "brown", "brown"]


def test_missing_cache_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPWISE_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="bash .ci/install"):
        prose.read_prose(DataConfig(source="prose"))


def test_split_depends_only_on_the_text_and_card_counts_add_up(cache, tmp_path):
    data = DataConfig(source="prose", valid_fraction=0.3, test_fraction=0.3)
    docs = prose.read_prose(data)
    card = prose.prepare_prose(docs, tmp_path / "out", data)
    assert sum(card["counts"].values()) == len(docs)
    splits = card["splits"]
    assert splits["train"]["words"] + splits["validation"]["words"] + splits["test"]["words"] \
        == sum(len(d.text.split()) for d in docs)
    for name, docs_in_split in prose.split_documents(docs, data).items():
        for doc in docs_in_split:  # every copy of a paragraph is in one split: no leak from train to test
            by_split = prose.split_documents(docs, data)
            assert all(other.text != doc.text for n, ds in by_split.items() if n != name for other in ds)
    text = (tmp_path / "out" / "train.txt").read_text()
    assert len(text) == max(card["splits"]["train"]["characters"] + 2 * (card["counts"]["train"] - 1), 0)
    assert json.loads((tmp_path / "out" / "data_card.json").read_text())["per_corpus"].keys() == {"austen",
                                                                                                  "brown"}
    assert "Brown corpus" in card["why"] \
        and "| brown | train |" in (tmp_path / "out" / "data_card.md").read_text()


def test_local_text_folder(tmp_path):
    (tmp_path / "a.txt").write_text("One line\nof a paragraph.\n\nAnother.\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("Third.", encoding="utf-8")
    docs = prose.read_prose(DataConfig(source="local", local_path=str(tmp_path)))
    assert [d.text for d in docs] == ["One line\nof a paragraph.", "Another.", "Third."]  # line breaks kept
    joined = prose.read_prose(DataConfig(source="local", local_path=str(tmp_path), join_lines=True))
    assert [d.text for d in joined] == ["One line of a paragraph.", "Another.", "Third."]
    with pytest.raises(FileNotFoundError, match="local_path"):
        prose.read_local_text(tmp_path / "missing.txt")


VERSE = """First Citizen:
Before we proceed any further, hear me speak.

All:
Speak, speak.

def f(x):
    return x  \n
    
MENENIUS:
    Either you must
Confess yourselves wondrous malicious,
"""


def test_local_text_keeps_every_line_break_through_data_prep(tmp_path):
    """Issue 26: data_prep joined each paragraph's lines of a local .txt (tiny Shakespeare kept
    12,240 of its 40,000 newlines). Now every line of the file, indentation included, is a line of
    the prepared splits, and the data card says the line breaks were kept."""
    (tmp_path / "play.txt").write_text(VERSE, encoding="utf-8")
    data = DataConfig(source="local", local_path=str(tmp_path / "play.txt"), valid_fraction=0.3,
                      test_fraction=0.3)
    card = prose.prepare_prose(prose.read_prose(data), tmp_path / "out", data)
    out = "\n".join((tmp_path / "out" / f"{name}.txt").read_text(encoding="utf-8") for name in card["counts"])
    lines = [line.rstrip() for line in VERSE.splitlines() if line.strip()]
    assert sorted(line for line in out.splitlines() if line.strip()) == sorted(lines)
    assert "    return x" in out.splitlines() and "    Either you must" in out.splitlines()
    assert sum(card["counts"].values()) == 4  # four paragraphs, whatever the split
    assert card["line_breaks"] == {"local": "kept"}
    assert "local kept (data.join_lines unset" in (tmp_path / "out" / "data_card.md").read_text(
        encoding="utf-8")
    joined = DataConfig(source="local", local_path=str(tmp_path / "play.txt"), join_lines=True)
    card = prose.prepare_prose(prose.read_prose(joined), tmp_path / "joined", joined)
    assert card["line_breaks"] == {"local": "joined"}
    assert "Confess yourselves wondrous malicious," \
        not in (tmp_path / "joined" / "train.txt").read_text().splitlines()
    assert "local joined (data.join_lines=true)" in (tmp_path / "joined" / "data_card.md").read_text(
        encoding="utf-8")


def test_the_built_in_corpora_keep_their_documented_joining(cache, tmp_path):
    """The default LM corpus is unchanged (its README figures stay valid): Austen's printed lines
    are joined, Brown's sentences too; ``join_lines=false`` keeps Austen's lines, and the card says which."""
    docs = prose.read_prose(DataConfig(source="prose"))
    assert "Emma Woodhouse, handsome, clever, and rich, seemed to unite" in [d.text for d in docs]
    assert not any("\n" in d.text for d in docs)
    card = prose.prepare_prose(docs, tmp_path / "out", DataConfig(source="prose"))
    assert card["line_breaks"] == {"austen": "joined", "brown": "joined"}
    kept = prose.read_prose(DataConfig(source="prose", join_lines=False))
    assert "Emma Woodhouse, handsome, clever,\nand rich, seemed to unite" in [d.text for d in kept]
    assert all("\n" not in d.text for d in kept if d.corpus == "brown")  # Brown has no lines to keep


def test_a_local_text_that_is_not_utf8_names_the_file_and_line(tmp_path):
    """Issue 26: a latin-1 .txt gave a bare UnicodeDecodeError, no file named."""
    (tmp_path / "book.txt").write_bytes("First line\nSecond line\nCaf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"book\.txt: line 3 is not UTF-8 \(byte e9 at byte 4 of the line\)"):
        prose.read_prose(DataConfig(source="local", local_path=str(tmp_path / "book.txt")))


def test_the_real_cache_holds_over_a_million_words():
    try:
        docs = prose.read_prose(DataConfig(source="prose"))
    except FileNotFoundError as err:
        pytest.skip(str(err))
    words = {c: sum(len(d.text.split()) for d in docs if d.corpus == c) for c in ("austen", "brown")}
    assert 700_000 < words["austen"] < 740_000 and words["brown"] > 950_000


def test_hugging_face_rows_are_joined_unless_join_lines_is_false(monkeypatch):
    import datasets

    rows = datasets.Dataset.from_dict({"text": ["Roses are red,\n  violets are blue.  \n", "  \n",
                                                "One line."]})
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: rows)
    joined = prose.read_prose(DataConfig(source="hf", hf_name="any/poems"))
    # as documented before
    assert [d.text for d in joined] == ["Roses are red, violets are blue.", "One line."]
    kept = prose.read_prose(DataConfig(source="hf", hf_name="any/poems", join_lines=False))
    assert [d.text for d in kept] == ["Roses are red,\n  violets are blue.", "One line."]
