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


def test_compare_across_families_shows_each_family_its_own_metrics(tmp_path):
    mt = fake_run(tmp_path, "tiny-a", "completed", 0.003, 3.25)
    lm = fake_run(tmp_path, "lm-b", "completed", 0.001, None)
    (lm / "evaluate" / "metrics.json").write_text(json.dumps({"loss": 1.7, "perplexity": 5.47,
                                                              "bpc": 2.4526}))
    clf = fake_run(tmp_path, "imdb-c", "completed", 0.001, None)
    (clf / "evaluate" / "metrics.json").write_text(json.dumps({"accuracy": 0.8716, "macro_f1": 0.8702,
                                                               "loss": 0.31}))
    for run, task in ((mt, "translation"), (lm, "language_modeling"), (clf, "classification")):
        (run / "config.json").write_text(json.dumps({"task": task, "training": {"lr": 0.001}}))
    rows = {line.split("  ")[0]: line.split()[-3:] for line in runs_compare([str(mt), str(lm), str(clf)],
                                                                            tmp_path)
            .split("results:")[1].splitlines()[3:]}
    assert rows["task"] == ["translation", "language_modeling", "classification"]
    assert rows["bpc"] == ["-", "2.4526", "-"] and rows["test perplexity"] == ["-", "5.47", "-"]
    assert rows["accuracy"] == ["-", "-", "0.8716"] and rows["macro-F1"] == ["-", "-", "0.8702"]
    assert rows["BLEU beam"] == ["3.25", "-", "-"] and rows["test loss"] == ["-", "1.7000", "0.3100"]
    assert "token accuracy" not in rows  # no run has it: no row of dashes


def test_a_damaged_or_interrupted_run_is_listed_as_such_with_what_to_do(tmp_path):
    import socket
    import subprocess
    import sys

    from src.runs.folders import process_start

    fake_run(tmp_path, "tiny-a", "completed", 0.003, 3.25)
    damaged = fake_run(tmp_path, "tiny-b", "completed", 0.003, 3.25)
    (damaged / "status.json").write_text('{"status": "comp')
    killed = fake_run(tmp_path, "tiny-c", "running", 0.003, None)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_start(gone.pid)
    gone.wait()
    state = json.loads((killed / "status.json").read_text())
    state["steps"]["train"]["status"] = "running"
    state["owner"] = {"pid": gone.pid, "host": socket.gethostname(), "started": started}
    (killed / "status.json").write_text(json.dumps(state))
    lines = runs_list(tmp_path).splitlines()
    rows = {line.split()[0]: " ".join(line.split()[1:3]) for line in lines[2:5]}
    assert rows == {"tiny-a": "completed 1/5", "tiny-b": f"damaged ({damaged / 'status.json'})",
                    "tiny-c": "interrupted (train)"}
    notes = sorted(lines[-2:])
    assert notes[0].startswith(f"tiny-b: {damaged / 'status.json'} is damaged (Unterminated string")
    assert notes[1].endswith("continue it with: python -m src.main train --resume tiny-c")
    compared = runs_compare([str(damaged), "tiny-a"], tmp_path)
    assert f"damaged ({damaged / 'status.json'})" in compared and "3.25" in compared


def test_a_run_stopped_by_ctrl_c_is_interrupted_with_the_resume_hint_not_failed(tmp_path):
    """A step stopped by a stop request (Ctrl-C, SIGTERM) records ``stopped``: not a failure of the run's
    own."""
    stopped = fake_run(tmp_path, "tiny-d", "failed", 0.003, None)
    state = json.loads((stopped / "status.json").read_text())
    state["failed_step"] = "train"
    state["steps"]["train"] = {"status": "failed", "stopped": True,
                               "reason": "KeyboardInterrupt: stopped by signal at step 544; resume from ..."}
    (stopped / "status.json").write_text(json.dumps(state))
    failed = fake_run(tmp_path, "tiny-e", "failed", 0.003, None)
    state["steps"]["train"] = {"status": "failed", "reason": "RuntimeError: diverged"}
    (failed / "status.json").write_text(json.dumps(state))
    lines = runs_list(tmp_path).splitlines()
    rows = {line.split()[0]: " ".join(line.split()[1:3]) for line in lines[2:4]}
    assert rows == {"tiny-d": "interrupted (train)", "tiny-e": "failed (train)"}
    assert lines[-1].endswith("continue it with: python -m src.main train --resume tiny-d")
