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
    (run_dir / "status.json").write_text(json.dumps({"status": "completed", "run_name": name,
                                                     "created": created,
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
    with pytest.raises(RunNotFoundError,
                       match="runs there: none; runs trained with another output_dir: pass --runs-dir"):
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


def test_a_reused_pid_is_not_mistaken_for_the_run_owner(tmp_path):
    """After kill -9 the kernel may give the run's pid to another process: the start time tells them apart."""
    import socket
    import subprocess
    import sys
    import time

    from src.runs.folders import owner_alive, process_start

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        who = {"pid": child.pid, "host": socket.gethostname(), "started": process_start(child.pid)}
        assert who["started"] is not None  # Linux: /proc tells
        assert owner_alive({"status": "running", "owner": who}) is True
        assert owner_alive({"status": "running", "owner": who | {"started": "another-boot:1"}}) is False
        child.kill()  # not waited for yet: a zombie, as a killed run is until its parent reaps it
        for _ in range(100):
            if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.05)
        assert owner_alive({"status": "running", "owner": who}) is False
    finally:
        child.kill()
        child.wait()


def write_run(output_dir: Path, name: str, created: float, state: str, checkpoint: bool, **extra) -> Path:
    run_dir = new_run_dir(output_dir, name, now=created)
    status = {"status": state, "run_name": name, "created": created, "steps": {}, **extra}
    (run_dir / "status.json").write_text(json.dumps(status))
    if checkpoint:
        best = run_dir / "train" / "checkpoints" / "best.pt"
        best.parent.mkdir(parents=True)
        best.write_bytes(b"x")
    point_latest(run_dir)
    return run_dir


def test_inference_takes_the_newest_completed_run_and_says_which_newer_one_it_passed_over(tmp_path):
    from loguru import logger

    done = write_run(tmp_path, "tiny", 100.0, "completed", checkpoint=True)
    failed = write_run(tmp_path, "tiny", 200.0, "failed", checkpoint=False, failed_step="data_prep")
    messages: list[str] = []
    sink = logger.add(messages.append, format="{message}", level="INFO")
    try:
        assert resolve_checkpoint("tiny", tmp_path) == done / "train" / "checkpoints" / "best.pt"
        assert resolve_checkpoint(LATEST, tmp_path) == resolve_checkpoint(str(tmp_path / LATEST), tmp_path)
    finally:
        logger.remove(sink)
    assert len(messages) == 3 and all(
        f"passed over the newer {failed.name} (failed in data_prep)" in m for m in messages)
    # --resume, report: the newest
    assert resolve_run(LATEST, tmp_path) == failed == resolve_run("tiny", tmp_path)
    with pytest.raises(RunNotFoundError, match=r"has no checkpoint .*the run is failed in data_prep"):
        resolve_checkpoint(failed.name, tmp_path)  # named by id: that run, and why it has no model


def test_no_completed_run_is_refused_naming_the_state_of_each(tmp_path):
    write_run(tmp_path, "tiny", 100.0, "failed", checkpoint=False, failed_step="tokenize")
    with pytest.raises(RunNotFoundError,
                       match=r"no completed run 'tiny' with a checkpoint .*failed in tokenize"):
        resolve_checkpoint("tiny", tmp_path)


def test_a_damaged_status_names_its_file_and_hides_no_other_run(tmp_path):
    from src.runs import DamagedFileError, read_status

    good = write_run(tmp_path, "tiny", 100.0, "completed", checkpoint=True)
    bad = write_run(tmp_path, "tiny", 200.0, "completed", checkpoint=True)
    (bad / "status.json").write_text('{\n  "status": "completed",\n  "run_name": ')  # truncated mid-write
    runs = list_runs(tmp_path)
    assert [(r.path, r.state) for r in runs] == [(good, "completed"), (bad, "damaged")]
    assert str(bad / "status.json") in runs[1].damaged and runs[1].run_name == "tiny"
    assert resolve_checkpoint("tiny", tmp_path) == good / "train" / "checkpoints" / "best.pt"
    with pytest.raises(DamagedFileError, match=f"{bad / 'status.json'} is damaged"):
        read_status(bad)  # a step or a resume never overwrites it as if it were empty
