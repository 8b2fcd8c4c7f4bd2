"""What import_offline does before it reaches a server: find sessions, re-point model weights.

The upload itself (Task.import_offline_session, metadata) needs a server: test_with_stub.py
drives it against the stand-in of tests/clearml_stub.
"""

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from src.tracking import find_offline_sessions, import_offline
from src.tracking.offline import pending_registrations, prepare_session_for_import
from tests.clearml_session import read_offline_session


def _copy_with_mtime(source: Path, target: Path, mtime: int) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    os.utime(target, (mtime, mtime))
    return target


def test_finds_every_session_zip_of_a_run_oldest_first(offline_run, tmp_path: Path):
    run_dir = tmp_path / "runs" / "default"
    late = _copy_with_mtime(
        offline_run.session_zip, run_dir / "train" / "clearml_offline" / "b.zip", 2_000_000_000
    )
    early = _copy_with_mtime(
        offline_run.session_zip, run_dir / "data_prep" / "clearml_offline" / "a.zip", 1_900_000_000
    )
    with zipfile.ZipFile(run_dir / "train" / "dataset.zip", "w") as zf:  # a zip that is no session
        zf.writestr("rows.txt", "x")
    (run_dir / "notes.txt").write_text("not a zip")
    assert find_offline_sessions(run_dir) == [early.resolve(), late.resolve()]
    assert find_offline_sessions([late, early, late]) == [late.resolve(), early.resolve()]


def test_a_missing_path_is_an_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="neither a run folder nor"):
        find_offline_sessions(tmp_path / "nope")


def test_models_are_re_pointed_at_weights_inside_the_session(offline_run, tmp_path: Path):
    folder = prepare_session_for_import(offline_run.session_zip, tmp_path, "http://files.example:8081")
    (record,) = json.loads((folder / "task.json").read_text())["offline_output_models"]
    weights = Path(record["weights"]["weights_filename"])
    assert weights == folder / "models" / "best.pt"  # not the original cache path
    assert weights.read_bytes() == offline_run.checkpoint.read_bytes()
    assert record["weights"]["upload_uri"] == "http://files.example:8081"
    assert record["weights"]["register_uri"] is None
    assert read_offline_session(folder).scalars == offline_run.session.scalars  # the rest is untouched


def test_weights_fall_back_to_the_artifact(offline_run, tmp_path: Path):
    first = prepare_session_for_import(offline_run.session_zip, tmp_path / "first", "http://files")
    shutil.rmtree(first / "models")
    folder = prepare_session_for_import(first, tmp_path / "second", "http://files")
    (record,) = json.loads((folder / "task.json").read_text())["offline_output_models"]
    weights = Path(record["weights"]["weights_filename"])
    assert (
        weights.parent.name == "tiny-model-weights"
        and weights.read_bytes() == offline_run.checkpoint.read_bytes()
    )


def test_registration_left_for_the_server(offline_run):
    assert pending_registrations(offline_run.session) == {
        "tiny-model": {"metadata": {"valid_loss": 1.3, "stage": "candidate"}, "publish": False}
    }


def test_import_without_a_configured_server_explains_and_touches_nothing(
    offline_run, no_clearml_config, tmp_path
):
    with pytest.raises(RuntimeError, match="no ClearML server is configured"):
        import_offline(offline_run.session_zip)
    with pytest.raises(FileNotFoundError, match="no ClearML offline sessions"):
        import_offline(tmp_path / "home")
