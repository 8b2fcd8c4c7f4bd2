"""``runs list`` / ``runs compare`` tables from run folders."""

import json
from pathlib import Path

import pytest

from src.runs.table import format_table, runs_compare, runs_list


def fake_run(root: Path, run_id: str, status: str, lr: float, bleu: float | None) -> Path:
    run = root / run_id
    (run / "evaluate").mkdir(parents=True)
    steps = {"train": {"status": "completed", "output": {"steps": 30, "best_valid_loss": 4.5}}}
    state = {"status": status, "run_name": "tiny", "created": 1.0 + len(list(root.iterdir())), "steps": steps}
    if status == "failed":
        state["failed_step"] = "evaluate"
    (run / "status.json").write_text(json.dumps(state))
    (run / "config.json").write_text(json.dumps({"run_id": run_id, "training": {"lr": lr, "max_steps": 30}}))
    if bleu is not None:
        (run / "evaluate" / "metrics.json").write_text(json.dumps({"beam": {"bleu": bleu, "chrf": 20.0}}))
    return run


def test_list_shows_status_progress_and_metrics_of_each_run(tmp_path):
    fake_run(tmp_path, "tiny-a", "completed", 0.003, 3.25)
    fake_run(tmp_path, "tiny-b", "failed", 0.001, None)
    lines = runs_list(tmp_path).splitlines()
    assert lines[0].split()[:2] == ["run", "status"] and set(lines[1]) <= {"-", " "}
    assert lines[2].split()[:2] == ["tiny-a", "completed"] and "BLEU 3.25" in lines[2]
    assert "failed (evaluate)" in lines[3]
    assert "no runs in" in runs_list(tmp_path / "none")
    classifier = fake_run(tmp_path, "imdb-c", "completed", 0.001, None)
    (classifier / "evaluate" / "metrics.json").write_text(json.dumps({"accuracy": 0.8716, "loss": 0.31}))
    assert "accuracy 0.8716" in runs_list(tmp_path).splitlines()[-1]


def test_compare_shows_only_the_differing_config_keys_and_the_metrics(tmp_path):
    a = fake_run(tmp_path, "tiny-a", "completed", 0.003, 3.25)
    b = fake_run(tmp_path, "tiny-b", "completed", 0.001, 2.5)
    text = runs_compare([str(a), "tiny-b"], tmp_path)
    lr_row = next(line for line in text.splitlines() if line.startswith("training.lr"))
    assert lr_row.split() == ["training.lr", "0.003", "0.001"]
    assert "training.max_steps" not in text and "run_id" not in text  # same in both, or identity
    bleu_row = next(line for line in text.splitlines() if line.startswith("BLEU beam"))
    assert bleu_row.split()[-2:] == ["3.25", "2.50"]
    with pytest.raises(ValueError, match="at least two runs"):
        runs_compare([str(b)], tmp_path)


def test_columns_are_aligned():
    assert format_table(["a", "bb"], [["xxx", "y"]]).splitlines() == ["a    bb", "---  --", "xxx  y"]
