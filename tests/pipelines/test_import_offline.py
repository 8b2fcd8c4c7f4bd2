"""``python -m src.main import-offline RUN_DIR`` on a real offline run, against the ClearML stand-in.

The run is ``train --config config/tiny.yaml --offline`` with no ClearML settings at all (empty
HOME, no CLEARML_* variables); the import then runs with the stand-in's settings. The stand-in
is a test double of the server: this proves the SDK is driven to upload what the run recorded.
Each command is killed with its process group at its timeout.
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from src.tracking import read_offline_session
from tests.clearml_stub.stub import ClearMLStub, run_src_main

REPO = Path(__file__).resolve().parents[2]
STEPS = ("data_prep", "tokenize", "train", "evaluate", "register")
TASK = "transformer-de-en"  # config/tiny.yaml keeps the default tracking names

# ~1 min on a loaded 2-core machine: the offline tiny pipeline (~45 s there), then the import (~7 s).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]



@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    root = tmp_path_factory.mktemp("import_offline")
    home = root / "home"
    home.mkdir()
    no_server = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    no_server.update(HOME=str(home), CLEARML_CACHE_DIR=str(home / "clearml_cache"), PYTHONUNBUFFERED="1")
    run = run_src_main(["train", "--config", "config/tiny.yaml", "--offline", f"output_dir={root / 'runs'}"], no_server,
                  timeout=240)
    run_dir = root / "runs" / "tiny"
    assert run.returncode == 0, run.stderr[-5000:]
    assert not list(home.rglob("clearml.conf")), "the offline run must not have found or written a server config"
    sessions = {}
    for step in STEPS:
        (zip_path,) = (run_dir / step / "clearml_offline").glob("*.zip")
        sessions[step] = read_offline_session(zip_path)

    with ClearMLStub(root / "clearml_stub") as stub:
        proc = run_src_main(["import-offline", str(run_dir)], stub.subprocess_env(), timeout=120)
        yield SimpleNamespace(stub=stub, proc=proc, run_dir=run_dir, sessions=sessions,
                              tasks={step: stub.task_by_name(f"{TASK}-{step}") for step in STEPS}
                              if proc.returncode == 0 else {})


def test_every_session_becomes_a_completed_task(imported):
    proc, stub = imported.proc, imported.stub
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert len(stub.tasks) == 5
    assert {step: t["status"] for step, t in imported.tasks.items()} == dict.fromkeys(STEPS, "completed")
    ids = ", ".join(imported.tasks[step]["id"] for step in STEPS)  # oldest session first: pipeline order
    assert f"imported 5 session(s): {ids}" in proc.stderr
    for step, task in imported.tasks.items():  # the step's re-validated config, as the UI shows it
        params = stub.hyperparams(task["id"])
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


def test_models_carry_uploaded_weights_and_their_metadata(imported):
    stub = imported.stub
    checkpoint = (imported.run_dir / "train" / "checkpoints" / "best.pt").read_bytes()
    by_step = {step: [m for m in stub.models if m["task"] == imported.tasks[step]["id"]] for step in STEPS}
    assert [len(by_step[s]) for s in STEPS] == [0, 0, 1, 0, 1]
    (trained,), (registered,) = by_step["train"], by_step["register"]
    for model in (trained, registered):
        assert (model["name"], model["framework"]) == (TASK, "PyTorch")
        assert model["uri"].startswith(stub.files_url), model["uri"]  # not file:// on the training machine
        assert stub.file_for_url(model["uri"]) == checkpoint
    assert trained["tags"] == ["best-valid"]
    assert {"valid_loss", "valid_perplexity", "steps"} <= set(trained["metadata"])
    registration = json.loads(stub.file_for_url(stub.artifacts(imported.tasks["register"]["id"])["registration"]["uri"]))
    assert registered["tags"] == [registration["stage"]]
    metadata = {key: item["value"] for key, item in registered["metadata"].items()}
    assert metadata["stage"] == registration["stage"]
    assert float(metadata["bleu"]) == pytest.approx(registration["bleu"])
