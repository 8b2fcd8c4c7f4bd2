"""The ClearML Dataset side of the steps that needs no server: what a ``data.source: clearml`` dataset must
hold, how ``data.clearml_dataset`` is read, and that an offline step records nothing it cannot have.

The lifecycle against a server (first version, reuse, child version, an upload trained on) is in
tests/tracking/test_datasets_stub.py.
"""

from pathlib import Path

import pytest

from src.config import ConfigError
from src.config.data import parse_dataset_ref
from src.experiment import load_config
from src.steps.corpus import dataset_name, read_uploaded_dataset, record_use, uploaded_file
from src.tasks import StepContext
from src.tracking import NullTracker
from src.tracking.datasets import content_hash

ID = "0123456789abcdef0123456789abcdef"


def files(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    return root


def test_a_table_task_reads_the_one_table_file_of_the_dataset(tmp_path):
    root = files(tmp_path, "README.md", "data/reviews.csv")
    assert uploaded_file(root, "classification", None, "ClearML dataset d") == root / "data" / "reviews.csv"
    assert uploaded_file(root, "classification", "README.md", "d") == root / "README.md"  # named: taken


@pytest.mark.parametrize(("names", "local_path", "expected"), [
    (("a.csv", "b.tsv"), None, "ClearML dataset d must hold exactly one .tsv/.csv/.jsonl/.parquet file "
                                "for task='translation' (or set data.local_path to one of them); it holds: "
                                "a.csv, b.tsv"),
    (("notes.txt",), None, "ClearML dataset d must hold exactly one .tsv/.csv/.jsonl/.parquet file for "
                           "task='translation' (or set data.local_path to one of them); it holds: notes.txt"),
    ((), None, "it holds: nothing"),
    (("a.csv",), "b.csv", "ClearML dataset d has no 'b.csv' (data.local_path); it holds: a.csv"),
])
def test_a_dataset_of_the_wrong_layout_is_one_line_naming_what_it_holds(tmp_path, names, local_path,
                                                                        expected):
    root = files(tmp_path, *names)
    with pytest.raises(ValueError) as err:
        uploaded_file(root, "translation", local_path, "ClearML dataset d")
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_a_text_task_reads_every_txt_file_of_the_dataset(tmp_path):
    root = files(tmp_path, "books/a.txt", "books/b.txt")
    assert uploaded_file(root, "language_modeling", None, "d") == root  # read_local_text takes the folder
    with pytest.raises(ValueError, match=r"must hold \.txt files for task='masked_lm'.*it holds: x\.csv$"):
        uploaded_file(files(tmp_path / "other", "x.csv"), "masked_lm", None, "d")


@pytest.mark.parametrize(("ref", "expected"), [
    (ID, {"dataset_id": ID}),
    ("stepwise/reviews", {"dataset_project": "stepwise", "dataset_name": "reviews", "dataset_version": None}),
    ("team/nlp/reviews@1.0.2", {"dataset_project": "team/nlp", "dataset_name": "reviews",
                                "dataset_version": "1.0.2"}),
])
def test_a_dataset_reference_is_an_id_or_project_name_and_version(ref, expected):
    assert parse_dataset_ref(ref) == expected


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.source=clearml"], "source='clearml' and clearml_dataset go together (got source='clearml', "
                              "clearml_dataset=None)"),
    (["data.clearml_dataset=p/n"], "source='clearml' and clearml_dataset go together (got source='ding', "
                                   "clearml_dataset='p/n')"),
    (["data.source=clearml", "data.clearml_dataset=reviews"], "clearml_dataset must be a dataset id (32 hex "
                                                              "digits) or 'project/name'"),
    (["data.source=clearml", "data.clearml_dataset=p/n@"], "or 'project/name@version' (got 'p/n@')"),
])
def test_the_data_config_refuses_a_clearml_source_it_cannot_find(overrides, message):
    with pytest.raises(ConfigError, match="invalid config") as err:
        load_config("config/tiny.yaml", overrides)
    assert message in str(err.value)


def test_offline_a_clearml_source_fails_before_reading_anything_and_nothing_is_recorded(tmp_path):
    cfg = load_config("config/tiny.yaml", ["data.source=clearml", "data.clearml_dataset=p/n",
                                           f"output_dir={tmp_path}"])
    step = StepContext("data_prep", cfg, tmp_path, NullTracker())
    with pytest.raises(ValueError, match="data.source='clearml' reads ClearML dataset 'p/n' from a server; "
                                         "this step runs offline"):
        read_uploaded_dataset(step)
    assert record_use(step, {"data_dir": "x"}) == {} and step.tracker.properties == {}
    assert dataset_name(cfg) == "translation-clearml"


def test_an_id_handed_on_is_recorded_as_the_step_s_user_property(tmp_path):
    step = StepContext("train", load_config("config/tiny.yaml"), tmp_path, NullTracker())
    assert record_use(step, {"tokenized_dir": "x"}, {"dataset_id": ID}) == {"dataset_id": ID}
    assert step.tracker.properties == {"dataset_id": ID}


def test_the_content_hash_follows_paths_and_bytes_not_the_folder_or_file_times(tmp_path):
    first = files(tmp_path / "a", "dataset/train/x.arrow", "dataset/test/y.arrow")
    second = files(tmp_path / "b", "dataset/test/y.arrow", "dataset/train/x.arrow")
    assert content_hash(first) == content_hash(second)
    (second / "dataset" / "test" / "y.arrow").write_text("y")
    changed = content_hash(second)
    assert changed != content_hash(first)
    (second / "dataset" / "test" / "y.arrow").rename(second / "dataset" / "test" / "z.arrow")
    assert content_hash(second) not in (changed, content_hash(first))  # a renamed file is other content
