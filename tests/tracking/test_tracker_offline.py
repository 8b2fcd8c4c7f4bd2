"""A tiny fake training loop recorded offline, then read back from the session zip."""

import json
from pathlib import Path

import pytest

from src.tracking import Tracker
from tests.clearml_session import read_offline_session
from tests.tracking.conftest import CONFIG, LOSSES

pytestmark = pytest.mark.timeout(120, method="thread")  # a hung SDK thread must not hang the suite


def test_close_returns_the_session_zip_moved_into_the_step_folder(offline_run):
    assert isinstance(offline_run.tracker, Tracker) and offline_run.tracker.task_id.startswith("offline-")
    assert (
        offline_run.session_zip
        == offline_run.root / "train" / "clearml_offline" / f"{offline_run.tracker.task_id}.zip"
    )
    assert offline_run.session_zip.is_file()
    assert offline_run.closed_again == offline_run.session_zip  # close is idempotent
    # the session was written under CLEARML_CACHE_DIR (tmp), and only the zip moved out of it
    assert (offline_run.cache / "offline" / offline_run.tracker.task_id / "task.json").is_file()
    assert not (offline_run.cache / "offline" / f"{offline_run.tracker.task_id}.zip").exists()


def test_task_has_names_type_and_tags_from_config(offline_run):
    task = offline_run.session.task
    assert (task["project_name"], task["name"], task["type"]) == ("unit-tests", "fake-train", "training")
    assert sorted(task["tags"]) == ["train", "unit"]


def test_connect_config_round_trips_and_is_editable_as_hyperparameters(offline_run):
    assert offline_run.connected == CONFIG
    assert (
        type(offline_run.connected) is dict and type(offline_run.connected["model"]) is dict
    )  # no ClearML proxies leak
    params = offline_run.session.hyperparameters["config"]
    assert params["model/d_model"] == "8"
    assert params["training/betas"] == "[0.9, 0.98]"
    assert params["training/max_minutes"] == ""  # None is stored empty and comes back as None


def test_session_holds_the_scalars(offline_run):
    scalars = offline_run.session.scalars
    assert scalars[("train", "loss")] == list(LOSSES.items())
    assert scalars[("train", "perplexity")] == [(step, 2.0**loss) for step, loss in LOSSES.items()]
    assert [step for step, _ in scalars[("learning_rate", "lr")]] == [1, 2, 3, 4]


def test_session_holds_the_debug_images_and_local_pngs(offline_run):
    images = {(image.title, image.series): image for image in offline_run.session.images}
    assert set(images) == {("attention/cross", "layer 0"), ("gradient norms", "layer x step")}
    assert all(image.iteration == 4 for image in images.values())
    plots = offline_run.root / "train" / "plots"
    pngs = sorted(p.relative_to(plots).as_posix() for p in plots.rglob("*.png"))
    assert pngs == ["attention_cross/layer_0_step0000004.png", "gradient_norms/layer_x_step_step0000004.png"]
    # the figure is rendered once: the session holds the very PNG of the run folder
    local = {("attention/cross", "layer 0"): plots / pngs[0],
             ("gradient norms", "layer x step"): plots / pngs[1]}
    for key, image in images.items():
        assert offline_run.session.read_bytes(image.file) == local[key].read_bytes()


def test_session_holds_table_and_text(offline_run):
    assert ("translations", "valid", 4) in offline_run.session.plots
    assert any("fake training done" in line for line in offline_run.session.log)


def test_model_is_registered_with_weights_config_and_tags(offline_run):
    assert offline_run.model_id.startswith("offline-")
    (model,) = offline_run.session.models
    assert (model.name, model.framework, model.tags) == ("tiny-model", "PyTorch", ["best-valid"])
    assert model.config == CONFIG
    assert offline_run.session.read_bytes(model.weights_file) == offline_run.checkpoint.read_bytes()


def test_weights_and_registration_are_also_artifacts(offline_run):
    artifacts = offline_run.session.artifacts
    assert (
        offline_run.session.read_bytes(artifacts["tiny-model-weights"]) == offline_run.checkpoint.read_bytes()
    )
    registration = json.loads(offline_run.session.read_bytes(artifacts["tiny-model-registration"]))
    assert registration == {"metadata": {"valid_loss": 1.3, "stage": "candidate"}, "publish": False}


def test_read_offline_session_reads_the_unzipped_folder_too(offline_run):
    folder = read_offline_session(offline_run.cache / "offline" / offline_run.tracker.task_id)
    assert folder.scalars == offline_run.session.scalars
    assert [i.title for i in folder.images] == [i.title for i in offline_run.session.images]


def test_read_offline_session_rejects_other_paths(tmp_path: Path):
    with pytest.raises(ValueError, match="not a ClearML offline session"):
        read_offline_session(tmp_path)


def test_failing_step_still_writes_its_session(offline_clearml: Path, tmp_path: Path):
    step_dir = tmp_path / "step"
    with (
        pytest.raises(RuntimeError, match="boom"),
        Tracker.start(
            project="unit-tests", task_name="failing", offline=True, output_dir=step_dir
        ) as tracker,
    ):
        tracker.log_scalar("train", "loss", 3.0, 1)
        raise RuntimeError("boom")
    (session_zip,) = (tmp_path / "step" / "clearml_offline").glob("*.zip")
    session = read_offline_session(session_zip)
    assert session.task_id == tracker.task_id
    assert session.scalars[("train", "loss")] == [(1, 3.0)]
    assert any("step failed: RuntimeError: boom" in line for line in session.log)


def test_unknown_task_type_is_rejected_before_clearml_starts():
    with pytest.raises(ValueError, match="task_type='train' is not a ClearML task type"):
        Tracker.start(project="p", task_name="t", task_type="train", offline=True)
