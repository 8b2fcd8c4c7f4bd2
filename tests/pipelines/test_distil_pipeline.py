"""``train --config config/imdb_distil_tiny.yaml``: a student of half the layers of the newest imdb-tiny run,
distilled through the five steps; a student that cannot take the teacher's weights fails in one line."""

import json
import re

import pytest
import torch

from tests.clearml_stub.stub import run_src_main
from tests.pipelines.conftest import (clean_env, imdb_data_dir, seed_step_cache, train_completed,
                                      train_offline)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def distilled(imdb_run, tmp_path_factory):
    """A 2-layer imdb-tiny teacher, then the student of config/imdb_distil_tiny.yaml (``distill_from:
    imdb-tiny``, the teacher's run name) under the same output_dir."""
    root = tmp_path_factory.mktemp("distil")
    data_dir = imdb_data_dir()
    seed_step_cache(root, imdb_run[1])  # the teacher's data steps: the session's imdb-tiny run's
    teacher = train_completed(
        "config/imdb_tiny.yaml",
        root,
        "model.n_encoder_layers=2",
        "training.max_steps=10",
        STEPWISE_DATA_DIR=data_dir,
    )
    proc, student = train_offline("config/imdb_distil_tiny.yaml", root, STEPWISE_DATA_DIR=data_dir)
    return root, teacher, student, proc.stderr


def test_the_student_is_half_the_teacher_with_its_tokenizer(distilled):
    _, teacher, student, _ = distilled
    status = json.loads((student / "status.json").read_text())
    assert all(step["status"] == "completed" for step in status["steps"].values()), status
    config = json.loads(
        torch.load(student / "train" / "checkpoints" / "best.pt", weights_only=True)["config"]
    )
    assert config["training"]["distill_from"] == str(teacher / "train" / "checkpoints" / "best.pt")
    assert (config["model"]["n_encoder_layers"], config["model"]["d_model"], config["model"]["d_ff"]) == (
        1,
        32,
        64,
    )
    # the student reads the teacher's token ids
    assert (student / "tokenize" / "tokenizer.json").read_text() == (
        teacher / "tokenize" / "tokenizer.json"
    ).read_text()


def test_the_log_says_which_teacher_layers_and_the_history_has_the_loss_parts(distilled):
    _, _, student, log = distilled
    assert re.search(r"distill_from \S+best\.pt \(student layers from teacher layers \[0\]\):", log), log[
        -3000:
    ]
    rows = dict(re.findall(r"^  (loaded|newly initialised|ignored)\s+(\d+)", log, re.MULTILINE))
    assert rows == {"loaded": "17", "newly initialised": "0", "ignored": "12"}  # teacher layer 1: 12 tensors
    history = [
        json.loads(line) for line in (student / "train" / "train_history.jsonl").read_text().splitlines()
    ]
    train_rows = [row for row in history if "loss" in row]
    assert train_rows and all({"distill_soft", "distill_hard"} <= row.keys() for row in train_rows)


def test_the_train_task_records_its_teacher(distilled):
    from tests.pipelines.test_user_properties import properties

    _, teacher, student, _ = distilled
    assert properties(student, "train")["distill_from"] == str(teacher / "train" / "checkpoints" / "best.pt")


def test_a_student_deeper_than_its_teacher_fails_in_one_line_before_any_step(distilled):
    root = distilled[0]
    proc = run_src_main(
        [
            "train",
            "--config",
            "config/imdb_distil_tiny.yaml",
            "model.n_encoder_layers=3",
            f"output_dir={root / 'runs'}",
            "run_name=too-deep",
        ],
        clean_env(root / "home"),
        timeout=120,
    )
    errors = [line for line in proc.stderr.splitlines() if "| ERROR" in line]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-3000:]
    assert (
        "a student of model.n_encoder_layers=3 cannot take the weights of a teacher of 2 layers (expected 1 "
        "to 2; by default 1, half)"
    ) in errors[0]
    assert not list((root / "runs").glob("too-deep*"))  # no run folder: nothing started


def test_the_throughput_command_puts_the_student_beside_its_teacher(distilled, capsys):
    from src.inference import throughput

    root, teacher, student, _ = distilled
    argv = [str(student), str(teacher), "--runs-dir", str(root / "runs"), "--texts", "16", "--repeats", "1",
            "--threads", "1", "--json"]
    assert throughput.main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["layers"] for row in rows] == [1, 2]
    for row, run in zip(rows, (student, teacher)):
        assert row["run"] == run.name and row["texts"] == 16
        assert row["test_accuracy"] == json.loads((run / "evaluate" / "metrics.json").read_text())["accuracy"]
    assert rows[0]["parameters"] < rows[1]["parameters"]
    assert rows[0]["speedup"] == pytest.approx(rows[0]["texts_per_s"] / rows[1]["texts_per_s"])
    assert rows[1]["speedup"] == 1.0


# --- the teacher as the student's input model (the lineage of tests/pipelines/test_model_lineage.py) -----
IMPORT_TRAIN_SESSIONS = """
import json
from src.tracking import import_offline

print("IDS", json.dumps(import_offline({zips!r})))
"""


def train_session(run_dir):
    """The run's train step's offline session zip."""
    (zip_path,) = (run_dir / "train" / "clearml_offline").glob("*.zip")
    return zip_path


def test_offline_the_student_session_names_its_teacher_model(distilled):
    from tests.clearml_session import read_offline_session

    _, teacher, student, _ = distilled
    session = read_offline_session(train_session(student))
    recorded = json.loads(session.read_bytes(session.artifacts["input-model-distill_from"]))
    teacher_train = json.loads((teacher / "status.json").read_text())["steps"]["train"]["output"]
    assert recorded["name"] == "distill_from" and recorded["model_id"] == teacher_train["model_id"]
    assert recorded["model_id"].startswith("offline-") and recorded["session"] == str(train_session(teacher))
    assert "input-model" not in session.artifacts  # no init_from: the teacher is its only input model


def test_import_offline_links_the_student_task_to_the_imported_teacher_model(distilled, tmp_path):
    """The teacher's and the student's train sessions imported in one call: the student's task lists the
    model the teacher's session became as its ``distill_from`` input model."""
    from tests.clearml_stub.stub import ClearMLStub

    _, teacher, student, _ = distilled
    with ClearMLStub(tmp_path / "stub") as stub:
        zips = [str(train_session(teacher)), str(train_session(student))]
        result = stub.run_python(IMPORT_TRAIN_SESSIONS.format(zips=zips), timeout=150)
        assert result.returncode == 0, result.output[-5000:]
        teacher_task, student_task = json.loads(
            next(line[4:] for line in result.stdout.splitlines() if line.startswith("IDS ")))
        (teacher_model,) = [m for m in stub.models if m["task"] == teacher_task]
        (student_entry,) = [t for t in stub.tasks if t["id"] == student_task]
        assert student_entry["models"]["input"] == [{"name": "distill_from", "model": teacher_model["id"]}]
        assert stub.unknown_calls == []
