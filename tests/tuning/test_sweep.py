"""The tuning tool: one JSON row per run, scored on validation, phrases droppable."""

import json

from loguru import logger

from src.tuning.sweep import main


def test_sweep_rows_score_validation_and_count_the_epoch(tmp_path):
    common = ["--config", "config/tiny.yaml", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "rows.jsonl"),
              "--threads", "1", "training.max_steps=3", "training.max_minutes=0.001", "data.ding_extra_train_phrases=true", "batching.upsample_primary=3"]
    assert main(["mixed", *common]) == 0
    assert main(["sentences", "--sentences-only", *common]) == 0
    mixed, sentences = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert (mixed["name"], sentences["name"]) == ("mixed", "sentences")
    assert mixed["steps"] == sentences["steps"] == 3
    assert 0.0 <= mixed["valid_bleu_greedy"] <= 100.0 and mixed["valid_loss"] > 0
    assert mixed["config"]["tracking"]["enabled"] is False
    assert mixed["config"]["training"]["max_minutes"] is None  # a step budget, whatever the machine's load
    # sentences-only: just the 3 copies of each sentence pair; mixed adds every phrase once
    assert sentences["train_rows_per_epoch"] % 3 == 0
    assert mixed["train_rows_per_epoch"] > sentences["train_rows_per_epoch"]
    assert len(list((tmp_path / "work").iterdir())) == 1  # the prepared corpus is shared


def test_bad_override_is_a_clear_error(tmp_path):
    errors: list[str] = []
    sink = logger.add(errors.append, level="ERROR", format="{message}")
    try:
        assert main(["x", "--config", "config/tiny.yaml", "--out", str(tmp_path / "rows.jsonl"), "model.d_modle=8"]) == 2
    finally:
        logger.remove(sink)
    assert len(errors) == 1 and "d_modle" in errors[0]
