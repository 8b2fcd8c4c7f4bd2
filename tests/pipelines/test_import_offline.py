"""``python -m src.main import-offline RUN`` on a real offline run, against the ClearML stand-in.

The run is the first of the session's two ``train --config config/tiny.yaml`` runs, made with no
ClearML settings at all (empty HOME, no CLEARML_* variables); the import then runs with the
stand-in's settings. The stand-in is a test double of the server: this proves the SDK is driven
to upload what the run recorded. Each command is killed with its process group at its timeout.
"""

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.clearml_session import read_offline_session
from tests.clearml_stub.stub import ClearMLStub, run_src_main

REPO = Path(__file__).resolve().parents[2]
STEPS = ("data_prep", "tokenize", "train", "evaluate", "register")
TASK = "transformer-de-en"  # config/tiny.yaml keeps the default tracking names

# the import itself takes ~7 s; the run comes from the session's tiny_runs fixture
pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def imported(tiny_runs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    root = tmp_path_factory.mktemp("import_offline")
    run_dir = tiny_runs.run_dirs[0]
    assert not list(Path(tiny_runs.env["HOME"]).rglob("clearml.conf")), \
        "the offline run must not have found or written a server config"
    sessions = {}
    for step in STEPS:
        (zip_path,) = (run_dir / step / "clearml_offline").glob("*.zip")
        sessions[step] = read_offline_session(zip_path)

    with ClearMLStub(root / "clearml_stub") as stub:
        proc = run_src_main(["import-offline", run_dir.name, "--runs-dir", str(run_dir.parent)],
                            stub.subprocess_env(),
                            timeout=120)
        yield SimpleNamespace(stub=stub, proc=proc, run_dir=run_dir, sessions=sessions,
                              tasks={step: stub.task_by_name(f"{TASK}-{step}") for step in STEPS}
                              if proc.returncode == 0 else {})
    for note in run_dir.rglob("*.imported.json"):  # what the import noted beside each session: the shared
        note.unlink()                              # run stays as the fixture made it


def test_every_session_becomes_a_completed_task(imported):
    proc, stub = imported.proc, imported.stub
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert len([t for t in stub.tasks if "dataset" not in t["system_tags"]]) == 5  # and the corpus's version
    assert {step: t["status"] for step, t in imported.tasks.items()} == dict.fromkeys(STEPS, "completed")
    ids = ", ".join(imported.tasks[step]["id"] for step in STEPS)  # oldest session first: pipeline order
    assert f"imported 5 session(s): {ids}" in proc.stderr
    for step, task in imported.tasks.items():  # the step's re-validated parameters, as the UI shows them
        params = stub.hyperparams(task["id"])
        if step in ("data_prep", "tokenize"):  # only the sections that shape their output
            assert (params["config/task"], params["config/data/source"]) == ("translation", "ding"), step
            assert not any(key.startswith(("config/run_name", "config/training/")) for key in params
                           if key != "config/training/distill_from"), step  # a teacher's tokenizer
        else:
            assert (params["config/run_name"], params["config/model/d_model"]) == ("tiny", "32"), step
    assert stub.unknown_calls == []


def test_scalars_and_debug_images_reach_the_server(imported):
    stub = imported.stub
    for step, session in imported.sessions.items():
        task_id = imported.tasks[step]["id"]
        uploaded = {}
        for title, series, iteration, value in stub.scalars(task_id):
            uploaded.setdefault((title, series), []).append((iteration, value))
        assert {key: sorted(points) for key, points in uploaded.items()} == {
            key: sorted(points) for key, points in session.scalars.items()}, step
        images = [e for e in stub.events if e["task"] == task_id and e["type"] == "training_debug_image"]
        assert len(images) == len(session.images), step
        assert all(stub.file_for_url(e["url"]) for e in images), step
    train = {title for title, _ in imported.sessions["train"].scalars}
    assert {"train", "valid", "learning_rate"} <= train


def test_artifacts_are_uploaded_to_the_files_host(imported):
    stub = imported.stub
    for step, session in imported.sessions.items():
        artifacts = stub.artifacts(imported.tasks[step]["id"])
        assert set(artifacts) == set(session.artifacts), step
        for name, artifact in artifacts.items():
            assert artifact["uri"].startswith(stub.files_url), (step, name, artifact["uri"])
            assert stub.file_for_url(artifact["uri"]), (step, name)
    metrics = stub.artifacts(imported.tasks["evaluate"]["id"])["metrics"]
    assert json.loads(stub.file_for_url(metrics["uri"])) == json.loads(
        (imported.run_dir / "evaluate" / "metrics.json").read_text())


def test_the_html_report_reaches_the_register_task(imported):
    """The register step's ``report.html`` artifact (issue 28): the run's report where reviewers look."""
    stub, session = imported.stub, imported.sessions["register"]
    report = stub.artifacts(imported.tasks["register"]["id"])["report.html"]
    assert stub.file_for_url(report["uri"]) == session.read_bytes(session.artifacts["report.html"])


def test_one_model_per_checkpoint_the_train_steps_tagged_by_register(imported):
    stub = imported.stub
    checkpoint = (imported.run_dir / "train" / "checkpoints" / "best.pt").read_bytes()
    by_step = {step: [m for m in stub.models if m["task"] == imported.tasks[step]["id"]] for step in STEPS}
    assert [len(by_step[s]) for s in STEPS] == [0, 0, 1, 0, 0]
    assert len(stub.models) == 1
    (model,) = by_step["train"]
    assert (model["name"], model["framework"]) == (TASK, "PyTorch")
    assert model["uri"].startswith(stub.files_url), model["uri"]  # not file:// on the training machine
    assert stub.file_for_url(model["uri"]) == checkpoint
    registration = json.loads(
        stub.file_for_url(stub.artifacts(imported.tasks["register"]["id"])["registration"]["uri"]))
    assert sorted(model["tags"]) == sorted(["best-valid", registration["stage"]])  # train's tag + register's
    metadata = {key: item["value"] for key, item in model["metadata"].items()}
    assert {"valid_loss", "valid_perplexity", "steps"} <= set(metadata)  # from train
    assert metadata["stage"] == registration["stage"]  # from register
    assert float(metadata["bleu"]) == pytest.approx(registration["bleu"])
    assert model["ready"] is (registration["stage"] == "production")  # published only when promoted


def test_every_session_imports_with_the_sdks_own_importer(imported, tmp_path):
    """``Task.import_offline_session``, unpatched: ClearML's documented path (clearml-task
    --import-offline-session)."""
    code = ("import sys; from clearml import Task\n"
            "for path in sys.argv[1:]: print('imported-as', Task.import_offline_session(path))")
    zips = [str(p) for step in STEPS for p in (imported.run_dir / step / "clearml_offline").glob("*.zip")]
    env = imported.stub.subprocess_env() | {"PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code, *zips], env=env, capture_output=True, text=True,
                          timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    new_ids = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("imported-as ")]
    assert len(new_ids) == 5 and "None" not in new_ids, proc.stdout + proc.stderr[-3000:]
    models = [m for m in imported.stub.models if m["task"] in new_ids]
    assert len(models) == 1 and models[0]["name"] == TASK  # the train step's, with its design
    assert models[0]["design"]  # the model's config reached the server
    register = [t for t in imported.stub.tasks if t["id"] in new_ids and t["name"] == f"{TASK}-register"]
    assert len(register) == 1 and "report.html" in imported.stub.artifacts(register[0]["id"])


def test_the_prepared_corpus_becomes_a_dataset_version_that_every_task_records(imported):
    """import-offline publishes what data_prep prepared offline, as an online data_prep does, and each
    imported task records that version: user property ``dataset_id`` and the SDK's ``Datasets/corpus``."""
    stub = imported.stub
    (version,) = [t for t in stub.tasks if "dataset" in t["system_tags"]]
    projects = {p["id"]: p["name"] for p in stub.projects}
    assert (projects[version["project"]], version["name"], version["status"], version["runtime"]["version"]) \
        == ("stepwise-transformers/.datasets/translation-ding", "translation-ding", "completed", "1.0.0")
    # the version's own record of its files (its "state" artifact): the run's dataset/ folder, byte for byte
    state = json.loads(stub.file_for_url(stub.artifacts(version["id"])["state"]["uri"]))
    corpus = imported.run_dir / "data_prep" / "dataset"
    assert {e["relative_path"]: e["hash"] for e in state["dataset_file_entries"]} == {
        f"dataset/{p.relative_to(corpus).as_posix()}": hashlib.sha256(p.read_bytes()).hexdigest()
        for p in corpus.rglob("*") if p.is_file()}
    for step, task in imported.tasks.items():
        params = stub.hyperparams(task["id"])
        assert params["properties/dataset_id"] == params["Datasets/corpus"] == version["id"], step
        assert task["runtime"]["datasets"] == [version["id"]], step


REPUBLISH = """
from pathlib import Path
from src.runs.sessions import prepared_corpus
from src.tracking.datasets import publish_corpus
version = publish_corpus(prepared_corpus(Path({run_dir!r})))
print("VERSION", version.id, version.reused)
"""


def test_publishing_the_same_corpus_again_reuses_its_version(imported):
    """What a second import-offline of the run (or of a run that prepared the same data) publishes."""
    stub = imported.stub
    (version,) = [t for t in stub.tasks if "dataset" in t["system_tags"]]
    result = stub.run_python(REPUBLISH.format(run_dir=str(imported.run_dir)), timeout=120)
    assert result.returncode == 0, result.output
    assert f"VERSION {version['id']} True" in result.stdout
    assert [t["id"] for t in stub.tasks if "dataset" in t["system_tags"]] == [version["id"]]
