"""prepare_corpus end to end on fixture files: saved artefacts, counts, extra phrases, failures."""

import json

import pytest
from data_fixtures import DING_PHRASES, DING_READ_DROPS, DING_SENTENCES
from datasets import load_from_disk

from src.config.data import DataConfig
from src.data.cleaning import split_of
from src.data.prepare import EmptyCorpusError, SplitTooSmallError, check_split_sizes, prepare_corpus


def assert_counts_add_up(card: dict) -> None:
    assert card["input_rows"] == card["kept_rows"] + card["dropped_rows"]
    assert card["kept_rows"] == sum(card["counts"].values())
    assert card["dropped_rows"] == sum(card["dropped"].values())


def test_ding_fixture_end_to_end(ding_cfg, tmp_path):
    card = prepare_corpus(ding_cfg, tmp_path / "out")
    assert_counts_add_up(card)
    assert card["input_rows"] == len(DING_SENTENCES) + len(DING_PHRASES) + sum(DING_READ_DROPS.values())
    assert card["dropped"] == {**DING_READ_DROPS, "not_a_sentence": len(DING_PHRASES)}
    dataset = load_from_disk(str(tmp_path / "out" / "dataset"))
    assert list(dataset) == ["train", "validation", "test"]
    assert all(dataset[name].column_names == ["src", "tgt", "extra"] for name in dataset)
    assert not any(dataset["train"]["extra"])
    kept = {(r["src"], r["tgt"]) for name in dataset for r in dataset[name]}
    assert kept == set(DING_SENTENCES)


def test_card_files_hold_numbers_and_a_png(ding_cfg, tmp_path):
    card = prepare_corpus(ding_cfg, tmp_path)
    on_disk = json.loads((tmp_path / "data_card.json").read_text(encoding="utf-8"))
    assert on_disk["counts"] == card["counts"]
    train_hist = on_disk["length_histograms"]["train"]["src"]
    assert sum(train_hist["counts"]) == card["counts"]["train"]
    assert len(train_hist["bin_edges"]) == len(train_hist["counts"]) + 1
    assert on_disk["examples"]["train"] and on_disk["source"]["sentence_rule"]
    assert (tmp_path / "length_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| train |" in (tmp_path / "data_card.md").read_text(encoding="utf-8")


def salt_sending_to_test(source: str, cfg: DataConfig) -> str:
    return next(
        f"s{i}"
        for i in range(1000)
        if split_of(source, cfg.model_copy(update={"split_salt": f"s{i}"})) == "test"
    )


def test_extra_phrases_go_to_train_only_and_never_share_an_eval_source(tmp_path):
    ding = tmp_path / "de-en"
    ding.write_text(
        "Es regnet stark. :: It is raining heavily.\n"
        # English is no sentence here: a phrase whose source is the test sentence above
        "Es regnet stark. :: raining heavily\n"
        "Regen {m} | Regenfälle {pl} :: rain | rainfalls\n",
        encoding="utf-8",
    )
    base = DataConfig(ding_path=str(ding), ding_extra_train_phrases=True, test_fraction=0.3)
    cfg = base.model_copy(update={"split_salt": salt_sending_to_test("Es regnet stark.", base)})
    card = prepare_corpus(cfg, tmp_path / "out")
    assert_counts_add_up(card)
    assert card["counts"]["test"] == 1
    assert card["dropped"] == {"source_in_eval": 1}
    assert card["train_extra_phrases"]["kept"] == 2
    dataset = load_from_disk(str(tmp_path / "out" / "dataset"))
    assert set(dataset["train"]["src"]) == {"Regen", "Regenfälle"}
    assert dataset["train"]["extra"] == [True, True]  # phrases, not sentences of the corpus


def test_extra_phrases_on_fixture_keep_counts(ding_cfg, tmp_path):
    card = prepare_corpus(ding_cfg.model_copy(update={"ding_extra_train_phrases": True}), tmp_path)
    assert_counts_add_up(card)
    assert "not_a_sentence" not in card["dropped"]
    evaluated = set(load_from_disk(str(tmp_path / "dataset"))["validation"]["src"]) | set(
        load_from_disk(str(tmp_path / "dataset"))["test"]["src"]
    )
    assert not evaluated & {s for s, _ in DING_PHRASES}
    train = load_from_disk(str(tmp_path / "dataset"))["train"]
    sentence_sources = {s for s, _ in DING_SENTENCES}
    # extra marks exactly the phrases
    assert [row["src"] not in sentence_sources for row in train] == train["extra"]
    assert sum(train["extra"]) == card["train_extra_phrases"]["kept"]


def test_english_to_german_swaps_the_sides(ding_cfg, tmp_path):
    prepare_corpus(ding_cfg.model_copy(update={"src_lang": "en", "tgt_lang": "de"}), tmp_path)
    dataset = load_from_disk(str(tmp_path / "dataset"))
    kept = {(r["tgt"], r["src"]) for name in dataset for r in dataset[name]}
    assert kept == set(DING_SENTENCES)


def test_rows_added_to_a_file_keep_their_split(tmp_path):
    def split_map(n_rows: int) -> dict[str, str]:
        path = tmp_path / f"c{n_rows}.tsv"
        path.write_text(
            "de\ten\n" + "".join(f"Satz {i}.\tSentence {i}.\n" for i in range(n_rows)), encoding="utf-8"
        )
        cfg = DataConfig(
            source="local",
            local_path=str(path),
            src_column="de",
            tgt_column="en",
            valid_fraction=0.2,
            test_fraction=0.2,
        )
        prepare_corpus(cfg, tmp_path / f"out{n_rows}")
        dataset = load_from_disk(str(tmp_path / f"out{n_rows}" / "dataset"))
        return {src: name for name in dataset for src in dataset[name]["src"]}

    small, large = split_map(300), split_map(900)
    assert len(small) == 300 and len(large) == 900
    assert all(large[src] == name for src, name in small.items())


def test_empty_result_after_filtering_names_the_counts(ding_cfg, tmp_path):
    with pytest.raises(EmptyCorpusError, match=r"expected at least 1, got 0 of 19 input rows.*'too_long': 8"):
        prepare_corpus(ding_cfg.model_copy(update={"max_chars": 5}), tmp_path)


def test_missing_ding_package_message(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"apt-get install trans-de-en"):
        prepare_corpus(DataConfig(ding_path=str(tmp_path / "missing")), tmp_path)


@pytest.mark.parametrize(("counts", "message"), [
    ({"train": 5, "validation": 0, "test": 9},
     r"the validation split has 0 pairs of 14 kept, expected at least 8: "
                                                r"use more data, raise data.valid_fraction \(now 0.05\)"),
    ({"train": 5, "validation": 8, "test": 3}, r"the test split has 3 pairs of 16 kept, expected at least 8"),
    ({"train": 0, "validation": 8, "test": 8}, r"the train split has 0 pairs"),
])
def test_splits_too_small_to_train_or_measure_are_named(counts, message):
    with pytest.raises(SplitTooSmallError, match=message):
        check_split_sizes(counts, DataConfig())
    check_split_sizes({"train": 1, "validation": 8, "test": 8}, DataConfig())  # the minimum passes


def test_a_file_mostly_in_another_encoding_is_a_warning_with_the_fix(tmp_path):
    from loguru import logger

    path = tmp_path / "latin1.tsv"
    rows = [("Grüße aus Köln.", "Greetings from Cologne."), ("Schön.", "Nice."), ("Ja.", "Yes.")]
    path.write_bytes(("de\ten\n" + "".join(f"{d}\t{e}\n" for d, e in rows)).encode("latin-1"))
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(str(m)), level="WARNING")
    try:
        card = prepare_corpus(DataConfig(source="local", local_path=str(path), src_column="de",
                                         tgt_column="en",
                                         valid_fraction=0.0, test_fraction=0.0), tmp_path / "out")
    finally:
        logger.remove(sink)
    assert card["dropped"] == {"not_utf8": 2}
    (warning,) = warnings
    assert ("2 of 3 rows (67%)" in warning and "are not valid UTF-8" in warning
            and "iconv -f latin1 -t utf-8" in warning)
