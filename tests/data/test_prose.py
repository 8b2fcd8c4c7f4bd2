"""The prose reader on small fixture files: Austen's R lazy-load database, Brown's tagged samples, local text."""

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
    """An R lazy-load database as janeaustenr ships it: objects in Rdata.rdb, their (offset, length) in Rdata.rdx."""
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
                "\tIt/pps didn't/dod* (/( really/rb )/) matter/vb ,/, he/pps said/vbd ;/. `/` fine/jj '/' ?/.\n")


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
                                       "Emma Woodhouse, handsome, clever, and rich, seemed to unite", "She was the youngest"]
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
    assert card["splits"]["train"]["words"] + card["splits"]["validation"]["words"] + card["splits"]["test"]["words"] \
        == sum(len(d.text.split()) for d in docs)
    for name, docs_in_split in prose.split_documents(docs, data).items():
        for doc in docs_in_split:  # every copy of a paragraph is in one split: no leak from train to test
            assert all(other.text != doc.text for n, ds in prose.split_documents(docs, data).items() if n != name for other in ds)
    text = (tmp_path / "out" / "train.txt").read_text()
    assert len(text) == max(card["splits"]["train"]["characters"] + 2 * (card["counts"]["train"] - 1), 0)
    assert json.loads((tmp_path / "out" / "data_card.json").read_text())["per_corpus"].keys() == {"austen", "brown"}
    assert "Brown corpus" in card["why"] and "| brown | train |" in (tmp_path / "out" / "data_card.md").read_text()


def test_local_text_folder(tmp_path):
    (tmp_path / "a.txt").write_text("One line\nof a paragraph.\n\nAnother.\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("Third.", encoding="utf-8")
    docs = prose.read_prose(DataConfig(source="local", local_path=str(tmp_path)))
    assert [d.text for d in docs] == ["One line of a paragraph.", "Another.", "Third."]
    with pytest.raises(FileNotFoundError, match="local_path"):
        prose.read_local_text(tmp_path / "missing.txt")


def test_the_real_cache_holds_over_a_million_words():
    try:
        docs = prose.read_prose(DataConfig(source="prose"))
    except FileNotFoundError as err:
        pytest.skip(str(err))
    words = {c: sum(len(d.text.split()) for d in docs if d.corpus == c) for c in ("austen", "brown")}
    assert 700_000 < words["austen"] < 740_000 and words["brown"] > 950_000
