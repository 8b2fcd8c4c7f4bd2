"""ClearML Datasets against the stand-in of tests/clearml_stub: the prepared corpus's versions, and a
dataset uploaded with ``clearml-data`` trained on.

The stand-in is a test double of the server, not a server: it proves the Dataset SDK and the
``clearml-data`` CLI are driven correctly (tasks, tags, versions, files on the files host). Each SDK run
happens in a child process, hard-killed on timeout. The import-offline side is in
tests/pipelines/test_import_offline.py.
"""

import csv
import json
import random
import subprocess
from pathlib import Path

import pytest

from tests.clearml_stub.fixture import clearml_stub  # noqa: F401 (fixture)
from tests.clearml_stub.stub import REPO_ROOT, run_src_main

pytestmark = pytest.mark.timeout(300, method="thread")
SHORT = ("training.max_steps=6", "training.eval_every=3", "training.checkpoint_every=3",
         "training.log_every=3")  # a user's run, shorter: the test is about the data
WORDS = ("good", "bad", "great", "awful", "fine", "film", "plot", "actor", "scene", "music")


def reviews_csv(path: Path, rows: int = 200) -> Path:
    """A labelled CSV as a user would upload it: text and label columns, a header row."""
    rng = random.Random(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(rows):
            writer.writerow([" ".join(rng.choice(WORDS) for _ in range(12)), rng.choice(["pos", "neg"])])
    return path


def dataset_tasks(stub) -> list[dict]:
    return [t for t in stub.tasks if "dataset" in t["system_tags"]]


def properties(stub, task: dict) -> dict[str, str]:
    return {name: item["value"] for name, item in task["hyperparams"].get("properties", {}).items()}


def used(task: dict) -> str | None:
    """The ``Datasets/corpus`` parameter ``Dataset.get(alias="corpus")`` left on the task."""
    return task["hyperparams"].get("Datasets", {}).get("corpus", {}).get("value")


LIFECYCLE = """
import json, shutil
from pathlib import Path
from clearml import Dataset
from src.experiment import load_config
from src.steps import STEP, run_step

def cfg(run, rows):
    return load_config({config!r}, ["data.source=local", "data.local_path={csv}", f"data.max_rows={{rows}}",
                                    "output_dir={runs}", f"run_id={{run}}", "tracking.project_name=unit"])

first = run_step(STEP["data_prep"], cfg("first", 150), offline=False)
again = run_step(STEP["data_prep"], cfg("again", 150), offline=False)  # the same rows: the same corpus
child = run_step(STEP["data_prep"], cfg("child", 180), offline=False)
# tokenize on a machine without the data_prep folder (an agent elsewhere): it reads the version by id
shutil.rmtree(Path(child["data_dir"]) / "dataset")
tokenized = run_step(STEP["tokenize"], cfg("child", 180), offline=False, data=child)
print("OUTPUTS", json.dumps({{"first": first, "again": again, "child": child, "tokenized": tokenized}}))
print("GRAPH", json.dumps(Dataset.get(dataset_id=child["dataset_id"]).get_dependency_graph()))
print("FILES", json.dumps(sorted(Dataset.get(dataset_id=first["dataset_id"]).list_files())))
"""


def test_the_prepared_corpus_is_one_dataset_version_per_content(clearml_stub, tmp_path):  # noqa: F811
    """First version, reuse of the same content, a child version for changed content, consumed by id."""
    runs = tmp_path / "runs"
    script = LIFECYCLE.format(config=str(REPO_ROOT / "config" / "imdb_tiny.yaml"),
                              csv=reviews_csv(tmp_path / "reviews.csv"), runs=runs)
    result = clearml_stub.run_python(script, timeout=240)
    assert result.returncode == 0, result.output
    assert not clearml_stub.unknown_calls
    outputs = json.loads(result.stdout.split("OUTPUTS ", 1)[1].splitlines()[0])
    first, again, child, tokenized = (outputs[k] for k in ("first", "again", "child", "tokenized"))

    versions = dataset_tasks(clearml_stub)
    assert [(v["name"], v["runtime"]["version"], v["status"]) for v in versions] == [
        ("classification-local", "1.0.0", "completed"), ("classification-local", "1.0.1", "completed")]
    assert [v["id"] for v in versions] == [first["dataset_id"], child["dataset_id"]]
    assert again["dataset_id"] == first["dataset_id"]  # reused, no third version
    project = {p["id"]: p["name"] for p in clearml_stub.projects}
    assert project[versions[0]["project"]] == "unit/.datasets/classification-local"  # where the UI lists it
    # each version is a child of the data_prep task that made it, and tagged with its content
    assert [v["parent"] for v in versions] == [first["task_id"], child["task_id"]]
    assert all(len([t for t in v["tags"] if t.startswith("content:")]) == 1 for v in versions)
    graph = json.loads(result.stdout.split("GRAPH ", 1)[1].splitlines()[0])
    assert graph == {child["dataset_id"]: [first["dataset_id"]], first["dataset_id"]: []}
    # the version holds the corpus as the run folder does: dataset/<split>/...
    corpus = runs / "first" / "data_prep" / "dataset"
    assert json.loads(result.stdout.split("FILES ", 1)[1].splitlines()[0]) == sorted(
        f"dataset/{p.relative_to(corpus).as_posix()}" for p in corpus.rglob("*") if p.is_file())

    tasks = {t["id"]: t for t in clearml_stub.tasks}
    for output in (first, again, child, tokenized):  # every step task records the version it used
        task = tasks[output["task_id"]]
        assert properties(clearml_stub, task)["dataset_id"] == used(task) == output["dataset_id"]
    assert tokenized["dataset_id"] == child["dataset_id"]
    # tokenize read every split back from the version's copy, not from the data_prep folder (deleted)
    report = json.loads(clearml_stub.file_for_url(
        clearml_stub.artifacts(tokenized["task_id"])["tokenization_report"]["uri"]))
    assert {split: r["texts"] for split, r in report.items()} == child["counts"]
    assert sum(child["counts"].values()) == 180 and child["counts"] != first["counts"]


def clearml_data(stub, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """``clearml-data ARGS`` as a user runs it (it keeps the open dataset in ~/.clearml_data.json)."""
    return subprocess.run(["clearml-data", *args], env=stub.subprocess_env(), cwd=workdir,
                          capture_output=True, text=True, timeout=120)


def test_a_dataset_uploaded_with_clearml_data_is_trained_on(clearml_stub, tmp_path):  # noqa: F811
    upload = reviews_csv(tmp_path / "upload" / "reviews.csv")
    for args in (["create", "--project", "reviews", "--name", "imdb-sample"], ["add", "--files", str(upload)],
                 ["close"]):
        proc = clearml_data(clearml_stub, tmp_path, *args)
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    (uploaded,) = dataset_tasks(clearml_stub)

    proc = run_src_main(["train", "--config", "config/imdb_tiny.yaml", "data.source=clearml",
                         "data.clearml_dataset=reviews/imdb-sample", f"output_dir={tmp_path / 'runs'}",
                         "tracking.project_name=unit", *SHORT], clearml_stub.subprocess_env(), timeout=240)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert not clearml_stub.unknown_calls
    steps = {t["name"].rsplit("-", 1)[1]: t for t in clearml_stub.tasks
             if t["name"].startswith("imdb-classifier-")}
    assert sorted(steps) == sorted(["data_prep", "tokenize", "train", "evaluate", "register"])
    assert all(t["status"] == "completed" for t in steps.values())
    # data_prep read the upload (its Datasets/source parameter), and published what it prepared from it
    data_prep = steps["data_prep"]
    assert data_prep["hyperparams"]["Datasets"]["source"]["value"] == uploaded["id"]
    assert properties(clearml_stub, data_prep)["source_dataset_id"] == uploaded["id"]
    (prepared,) = [t for t in dataset_tasks(clearml_stub) if t["id"] != uploaded["id"]]
    assert prepared["name"] == "classification-clearml" and prepared["parent"] == data_prep["id"]
    for step, task in steps.items():  # the id of the data every task used: a column of the experiments table
        assert properties(clearml_stub, task)["dataset_id"] == used(task) == prepared["id"], step
    card = json.loads(clearml_stub.file_for_url(clearml_stub.artifacts(data_prep["id"])["data_card"]["uri"]))
    assert sum(card["counts"].values()) == 200  # every uploaded row, split

    # a dataset of another layout: the run stops in data_prep with one line naming what it holds
    second = reviews_csv(tmp_path / "two" / "b.csv", rows=20)
    reviews_csv(tmp_path / "two" / "a.csv", rows=20)
    for args in (["create", "--project", "reviews", "--name", "two-files"],
                 ["add", "--files", str(second.parent)], ["close"]):
        assert clearml_data(clearml_stub, tmp_path, *args).returncode == 0, args
    proc = run_src_main(["train", "--config", "config/imdb_tiny.yaml", "data.source=clearml",
                         "data.clearml_dataset=reviews/two-files", f"output_dir={tmp_path / 'runs'}",
                         "tracking.project_name=unit"], clearml_stub.subprocess_env(), timeout=240)
    assert proc.returncode != 0
    assert "must hold exactly one .tsv/.csv/.jsonl/.parquet file for task='classification' (or set " \
           "data.local_path to one of them); it holds: a.csv, b.csv" in proc.stderr
