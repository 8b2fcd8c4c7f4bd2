"""One reader of a run's test sentences (``src/runs/folders.py::run_test_sentences``) behind both benches."""

import argparse
import shutil

from datasets import Dataset, DatasetDict

from src.export import bench as export_bench
from src.runs.folders import BEST_CHECKPOINT, STATUS_FILE, run_test_sentences
from src.serving import bench as serving_bench


def make_run(root, checkpoint, column: str = "src"):
    """A run folder holding ``checkpoint`` as its best and a prepared dataset whose test split has a blank
    row."""
    run = root / "run-1"
    (run / STATUS_FILE).parent.mkdir(parents=True, exist_ok=True)
    (run / STATUS_FILE).write_text("{}")
    (run / BEST_CHECKPOINT).parent.mkdir(parents=True)
    shutil.copy(checkpoint, run / BEST_CHECKPOINT)
    DatasetDict({"train": Dataset.from_dict({column: ["train only"]}),
                 "test": Dataset.from_dict({column: ["Erster Satz.", "  ", "Zweiter Satz.",
                                                     "Dritter Satz."]})},
                ).save_to_disk(str(run / "data_prep" / "dataset"))
    return run


def test_both_benches_read_the_same_test_sentences_of_a_run(checkpoints, tmp_path):
    run = make_run(tmp_path, checkpoints["translate"])
    folder = run / "data_prep" / "dataset"
    assert run_test_sentences(run, 2) == (["Erster Satz.", "Zweiter Satz."], folder)  # blank rows skipped
    assert export_bench.sentences_of_run(run / BEST_CHECKPOINT, 3) == (
        ["Erster Satz.", "Zweiter Satz.", "Dritter Satz."], f"{folder} (test split)")
    args = argparse.Namespace(texts=None, run=str(run), runs_dir=str(tmp_path))
    assert serving_bench.sentences(args) == (["Erster Satz.", "Zweiter Satz.", "Dritter Satz."],
                                             f"{folder} (test split)")


def test_a_classification_run_gives_its_text_column(checkpoints, tmp_path):
    run = make_run(tmp_path, checkpoints["classify"], column="text")
    assert run_test_sentences(run, 1) == (["Erster Satz."], run / "data_prep" / "dataset")


def test_without_a_run_folder_both_benches_say_built_in_sentences(checkpoints):
    assert run_test_sentences(None, 5) == ([], None)
    texts, source = export_bench.sentences_of_run(checkpoints["translate"], 7)
    assert source == "built-in sentences" and len(texts) == 7
    args = argparse.Namespace(texts=None, run=str(checkpoints["translate"]), runs_dir="runs")
    assert serving_bench.sentences(args) == (serving_bench.FALLBACK, "built-in sentences")
    result = {"model": "m", "family": "f", "backend": "torch", "window_ms": 5.0, "max_batch_size": 32,
              "rows": [],
              "sentence_source": "built-in sentences"}
    assert serving_bench.report(result).splitlines()[0].endswith("sentences from built-in sentences")
