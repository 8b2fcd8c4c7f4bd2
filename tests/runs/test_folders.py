"""Run folders: a new one per train, never shared; found again by path, id, name or 'latest'."""

import json
import os
from pathlib import Path

import pytest

from src.runs import (
    LATEST,
    RunNotFoundError,
    list_runs,
    new_run_dir,
    point_latest,
    resolve_checkpoint,
    resolve_run,
    run_dir_of_checkpoint,
)


def make_run(output_dir: Path, name: str, created: float, now: float | None = None) -> Path:
    run_dir = new_run_dir(output_dir, name, now=now if now is not None else created)
    (run_dir / "status.json").write_text(json.dumps({"status": "completed", "run_name": name, "created": created,
                                                      "steps": {}}))
    point_latest(run_dir)
    return run_dir


def test_two_runs_started_in_the_same_second_get_two_folders(tmp_path):
    first, second = new_run_dir(tmp_path, "tiny", now=0.0), new_run_dir(tmp_path, "tiny", now=0.0)
    assert first != second and first.is_dir() and second.is_dir()
    assert second.name == f"{first.name}-2" and first.name.startswith("tiny-19700101-")


def test_latest_points_at_the_newest_run_and_is_not_listed_as_a_run(tmp_path):
    a = make_run(tmp_path, "tiny", created=100.0)
    b = make_run(tmp_path, "tiny", created=200.0)
    assert os.readlink(tmp_path / LATEST) == b.name  # relative: the runs folder can move
    assert resolve_run(None, tmp_path) == b == resolve_run(LATEST, tmp_path)
    assert [r.path for r in list_runs(tmp_path)] == [a, b]


def test_a_run_is_found_by_path_id_or_name(tmp_path):
    old = make_run(tmp_path, "base", created=100.0)
    new = make_run(tmp_path, "base", created=200.0, now=200.0 + 3600)
    other = make_run(tmp_path, "other", created=300.0)
    assert resolve_run(str(old), tmp_path) == old
    assert resolve_run(old.name, tmp_path) == old
    assert resolve_run("base", tmp_path) == new  # a name means its newest run
    assert resolve_run(LATEST, tmp_path) == other


def test_an_unknown_run_names_the_runs_that_exist(tmp_path):
    run = make_run(tmp_path, "tiny", created=1.0)
    with pytest.raises(RunNotFoundError, match=rf"no run 'nope'.*runs there: {run.name}"):
        resolve_run("nope", tmp_path)
    with pytest.raises(RunNotFoundError, match="runs there: none; runs trained with another output_dir: pass --runs-dir"):
        resolve_run(LATEST, tmp_path / "empty")


def test_checkpoint_of_a_run_and_a_lone_file(tmp_path):
    run = make_run(tmp_path, "tiny", created=1.0)
    with pytest.raises(RunNotFoundError, match="has no checkpoint"):
        resolve_checkpoint(run.name, tmp_path)
    best = run / "train" / "checkpoints" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"x")
    assert resolve_checkpoint(run.name, tmp_path) == best
    assert run_dir_of_checkpoint(best) == run
    alone = tmp_path / "elsewhere" / "model.pt"
    alone.parent.mkdir()
    alone.write_bytes(b"x")
    assert resolve_checkpoint(str(alone), tmp_path) == alone and run_dir_of_checkpoint(alone) is None


def test_a_live_run_is_told_from_a_dead_one(tmp_path):
    import socket
    import subprocess
    import sys

    from src.runs.folders import live_owner

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        running = {"status": "running", "owner": {"pid": child.pid, "host": socket.gethostname()}}
        assert live_owner(running) == f"pid {child.pid} on {socket.gethostname()}"
        assert live_owner(running | {"status": "completed"}) is None
        assert live_owner(running | {"owner": {"pid": child.pid, "host": "another-machine"}}) is None
    finally:
        child.kill()
        child.wait()
    assert live_owner(running) is None  # the process is gone: a killed run, free to resume


def test_a_dangling_latest_falls_back_to_the_newest_run(tmp_path):
    import shutil

    a = make_run(tmp_path, "tiny", created=100.0)
    b = make_run(tmp_path, "tiny", created=200.0, now=300.0)
    shutil.rmtree(b)
    assert resolve_run(LATEST, tmp_path) == a


def test_a_missing_checkpoint_file_is_named_as_a_file(tmp_path):
    from src.runs import resolve_checkpoint

    with pytest.raises(RunNotFoundError, match=f"checkpoint file not found: {tmp_path / 'nope.pt'}"):
        resolve_checkpoint(tmp_path / "nope.pt", tmp_path)
