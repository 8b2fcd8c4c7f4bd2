"""The installed Ding dictionary (slow: reads 206k lines; skipped when trans-de-en is missing)."""

from pathlib import Path

import pytest
from datasets import load_from_disk

from src.config.data import DataConfig
from src.data.prepare import prepare_corpus

DING = Path(DataConfig().ding_path)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DING.is_file(), reason="sudo apt-get install trans-de-en"),
]


def test_default_corpus_has_about_20k_sentence_pairs(tmp_path):
    card = prepare_corpus(DataConfig(), tmp_path)
    assert card["input_rows"] == card["kept_rows"] + card["dropped_rows"]
    assert 20_000 <= card["kept_rows"] <= 26_000
    assert card["counts"]["validation"] > 900 and card["counts"]["test"] > 900


def test_extra_phrases_stay_out_of_evaluation(tmp_path):
    card = prepare_corpus(DataConfig(ding_extra_train_phrases=True), tmp_path)
    assert card["input_rows"] == card["kept_rows"] + card["dropped_rows"]
    assert 300_000 <= card["train_extra_phrases"]["kept"] <= 400_000
    dataset = load_from_disk(str(tmp_path / "dataset"))
    held_out = set(dataset["validation"]["src"]) | set(dataset["test"]["src"])
    assert not held_out & set(dataset["train"]["src"])
