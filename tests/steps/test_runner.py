"""A failed step keeps its evidence; a resume never shows a stale completed step; killed sessions survive."""

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines.in_process import start_run
from src.experiment import load_config
from src.runs import read_status, recover_offline_sessions, update_status
from src.steps import tracked_step
from tests.clearml_session import read_offline_session
from tests.tracking.conftest import isolated_offline_clearml, subprocess_env

pytestmark = pytest.mark.timeout(120, method="thread")


def tiny(tmp_path: Path, *overrides: str):
    return load_config("config/tiny.yaml", [f"output_dir={tmp_path / 'runs'}", "run_id=r1", *overrides])


def explode() -> None:
    raise ZeroDivisionError("the numbers did not add up")


def test_an_unexpected_error_leaves_its_traceback_where_status_says_and_in_the_clearml_log(tmp_path):
    cfg = tiny(tmp_path)
    with isolated_offline_clearml(tmp_path), pytest.raises(ZeroDivisionError):
        with tracked_step("evaluate", cfg, "testing", offline=True):
            explode()
    status = read_status(cfg.run_dir)
    step = status["steps"]["evaluate"]
    assert (status["status"], status["failed_step"], step["status"]) == ("failed", "evaluate", "failed")
    assert step["reason"] == "ZeroDivisionError: the numbers did not add up"
    traceback_text = Path(step["traceback"]).read_text()
    assert Path(step["traceback"]).parent == cfg.run_dir / "evaluate"
    assert "Traceback (most recent call last)" in traceback_text and "in explode" in traceback_text
    (zip_path,) = (cfg.run_dir / "evaluate" / "clearml_offline").glob("*.zip")
    log = "\n".join(read_offline_session(zip_path).log)
    assert "in explode" in log and "ZeroDivisionError: the numbers did not add up" in log


def test_a_resume_resets_every_step_it_runs_again(tmp_path):
    cfg = tiny(tmp_path)
    run_dir = cfg.run_dir
    outputs = {"data_prep": {"data_dir": "elsewhere/data_prep"},
               "tokenize": {"tokenized_dir": "elsewhere/tokenize",
                            "tokenizers": {"src": "elsewhere/tokenize/t.json"}}}
    for name in ("data_prep", "tokenize", "train", "evaluate", "register"):
        update_status(run_dir, name, "completed", output=outputs.get(name, {"x": 1}))
    update_status(run_dir, "train", "failed", reason="killed")  # a later attempt failed in train
    done = start_run(cfg, resume=True, changes={"training.max_steps": (30, 60)})
    steps = read_status(run_dir)["steps"]
    assert set(done) == {"data_prep", "tokenize"}
    assert done["tokenize"]["output"] == {"tokenized_dir": str(run_dir / "tokenize"),
                                          "tokenizers": {"src": str(run_dir / "tokenize" / "t.json")}}
    assert steps["data_prep"]["output"] == {"data_dir": str(run_dir / "data_prep")}  # where the run is now
    assert {n: steps[n]["status"] for n in ("train", "evaluate", "register")} == dict.fromkeys(
        ("train", "evaluate", "register"), "pending")  # not the 'completed' of the first attempt
    (resume,) = read_status(run_dir)["resumes"]
    assert resume["changes"] == {"training.max_steps": [30, 60]}
    assert json.loads((run_dir / "config.json").read_text())["run_id"] == "r1"


def test_a_new_run_never_writes_into_a_folder_that_holds_one(tmp_path):
    cfg = tiny(tmp_path)
    start_run(cfg, resume=False, changes={})
    with pytest.raises(FileExistsError, match="already holds a run"):
        start_run(cfg, resume=False, changes={})


KILLED_STEP = textwrap.dedent("""
    import os, signal, sys
    from src.experiment import load_config
    from src.steps import tracked_step
    cfg = load_config("config/tiny.yaml", [f"output_dir={sys.argv[1]}", "run_id=r1"])
    with tracked_step("train", cfg, "training", offline=True) as step:
        for i in range(5):
            step.tracker.log_scalar("train", "loss", 5.0 - i, i)
        step.tracker.flush()  # as the trainer does at every checkpoint
        os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_steps_offline_session_is_kept_in_the_run_folder(tmp_path):
    env = subprocess_env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", KILLED_STEP, str(tmp_path / "runs")], env=env,
                          capture_output=True,
                          text=True, timeout=90, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    run_dir = tmp_path / "runs" / "r1"
    assert read_status(run_dir)["steps"]["train"]["status"] == "running"
    assert not list(run_dir.rglob("*.zip"))  # the SDK zips only on close: the session sits in its cache
    (zip_path,) = recover_offline_sessions(run_dir)
    assert zip_path.parent == run_dir / "train" / "clearml_offline"
    session = read_offline_session(zip_path)
    assert session.scalars[("train", "loss")] == [(i, 5.0 - i) for i in range(5)]
    assert recover_offline_sessions(run_dir) == []  # once


def test_a_step_that_failed_and_closed_is_not_recovered_twice(tmp_path):
    cfg = tiny(tmp_path)
    with isolated_offline_clearml(tmp_path), pytest.raises(ZeroDivisionError):
        with tracked_step("evaluate", cfg, "testing", offline=True):
            explode()
    step = read_status(cfg.run_dir)["steps"]["evaluate"]
    assert Path(step["offline_session"]).is_file() and Path(step["offline_folder"]).is_dir()
    assert recover_offline_sessions(cfg.run_dir) == []
