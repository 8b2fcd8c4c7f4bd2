"""Run state is the truth (issue 26): on real tiny runs, a killed run is interrupted, a damaged status.json
hides no other run, inference skips unfinished runs, and a resume re-runs no completed step.

The runs are copies of the session's ``tiny_runs``, damaged in ``tmp_path``; the one real process is a
tiny train killed with SIGKILL once it is in its train step.
"""

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from src.runs import point_latest
from src.runs.folders import process_start
from tests.clearml_stub.stub import REPO_ROOT, kill_process_group, run_src_main
from tests.pipelines.conftest import clean_env

pytestmark = pytest.mark.timeout(300)


def copy_run(run_dir: Path, runs_dir: Path) -> Path:
    copy = runs_dir / run_dir.name
    shutil.copytree(run_dir, copy, symlinks=True)
    return copy


def status_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def dead_owner() -> dict:
    """The owner record of a process that has exited, as a kill -9 leaves it."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_start(gone.pid)
    gone.wait()
    return {"pid": gone.pid, "host": socket.gethostname(), "started": started}


def test_a_killed_run_is_running_then_interrupted_and_inference_skips_it(tiny_runs, tmp_path):
    runs_dir = tmp_path / "runs"
    completed = copy_run(tiny_runs.run_dirs[0], runs_dir)
    env = clean_env(tmp_path / "home")
    log = (tmp_path / "train.log").open("w")
    # max_steps far beyond what runs before the kill: the run is still training whatever the machine's speed
    train = subprocess.Popen([sys.executable, "-m", "src.main", "train", "--config", "config/tiny.yaml",
                              f"output_dir={runs_dir}", "training.max_steps=100000"], cwd=REPO_ROOT, env=env,
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline, killed = time.monotonic() + 180, None
        while killed is None and time.monotonic() < deadline and train.poll() is None:
            time.sleep(0.5)
            fresh = [
                p for p in runs_dir.iterdir() if p.name not in (completed.name, "latest") and (
                    p / "status.json").is_file()]
            if fresh and status_of(fresh[0])["steps"].get("train", {}).get("status") == "running":
                killed = fresh[0]
        assert killed is not None, (tmp_path / "train.log").read_text()[-3000:]

        def cli(*args):
            proc = run_src_main(list(args), env, 120)
            assert proc.returncode == 0, proc.stderr[-3000:]
            return proc

        def row(listing: str, run: Path) -> str:
            return next(line for line in listing.splitlines() if line.startswith(run.name))

        assert " running (train) " in row(cli("runs", "list", "--runs-dir", str(runs_dir)).stdout, killed)
        translated = cli("translate", "tiny", "Das ist gut.", "--runs-dir", str(runs_dir), "--max-len", "8")
        assert translated.stdout.strip()  # from the completed run, not "no checkpoint yet"
        assert (f"tiny: using {completed.name}, the newest completed run; passed over the newer "
                f"{killed.name} (running in train)") in translated.stderr

        train.send_signal(signal.SIGKILL)
        train.wait(30)
        listing = cli("runs", "list", "--runs-dir", str(runs_dir)).stdout
        assert " interrupted (train) " in row(listing, killed) and " completed " in row(listing, completed)
        assert (f"{killed.name}: its process is gone (interrupted in train); continue it with: "
                f"python -m src.main train --resume {killed.name}") in listing
    finally:
        kill_process_group(train)
        log.close()


def test_a_damaged_status_json_is_named_and_every_other_run_still_works(tiny_runs, tmp_path):
    runs_dir = tmp_path / "runs"
    good, damaged = (copy_run(run, runs_dir) for run in tiny_runs.run_dirs)
    point_latest(damaged)
    status_file = damaged / "status.json"
    lines = status_file.read_text().splitlines(keepends=True)
    status_file.write_text("".join(lines[:5]) + lines[5][:13])  # cut mid-write: line 6, column 14

    def cli(*args):
        return run_src_main(list(args), tiny_runs.env, 120)

    listed = cli("runs", "list", "--runs-dir", str(runs_dir))
    assert listed.returncode == 0, listed.stderr[-3000:]
    rows = {line.split()[0]: line for line in listed.stdout.splitlines() if line.startswith("tiny-")}
    assert f" damaged ({status_file}) " in rows[damaged.name] and " completed " in rows[good.name]
    assert f"{damaged.name}: {status_file} is damaged (Expecting value: line 6 column 14" in listed.stdout
    compared = cli("runs", "compare", str(good), str(damaged))
    assert compared.returncode == 0 and f"damaged ({status_file})" in compared.stdout, compared.stderr[-3000:]
    translated = cli("translate", "latest", "Das ist gut.", "--runs-dir", str(runs_dir), "--max-len", "8")
    assert translated.returncode == 0 and translated.stdout.strip(), translated.stderr[-3000:]
    assert (f"passed over the newer {damaged.name} ({status_file} is damaged (Expecting value"
            in translated.stderr)
    # latest still means the newest run
    resumed = cli("train", "--resume", "latest", f"output_dir={runs_dir}")
    errors = [line for line in resumed.stderr.splitlines() if "ERROR" in line]
    assert (resumed.returncode == 1 and len(errors) == 1
            and f"{status_file} is damaged" in errors[0]), resumed.stderr
    assert "Traceback" not in resumed.stderr


def test_a_resume_after_a_kill_in_evaluate_keeps_the_trained_model(tiny_runs, tmp_path):
    """status.json as a kill -9 during evaluate leaves it; the resume evaluates and registers, and trains
    nothing."""
    run_dir = copy_run(tiny_runs.run_dirs[0], tmp_path / "runs")
    before = status_of(run_dir)
    state = json.loads(json.dumps(before))
    state |= {"status": "running", "owner": dead_owner()}
    state["steps"]["evaluate"] = {"status": "running", "time": time.time(), "task_id": "offline-killed"}
    state["steps"]["pipeline"] = {"status": "running", "time": time.time()}
    del state["steps"]["register"]
    (run_dir / "status.json").write_text(json.dumps(state, indent=2))
    best = run_dir / "train" / "checkpoints" / "best.pt"
    weights, config = best.read_bytes(), json.loads((run_dir / "config.json").read_text())

    proc = run_src_main(["train", "--resume", str(run_dir)], tiny_runs.env, 180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step train: reusing the completed output" in proc.stderr
    # no second model, no training
    assert "registered model" not in proc.stderr and "resuming from" not in proc.stderr
    after = status_of(run_dir)
    assert after["status"] == "completed" and after["steps"]["train"] == before["steps"]["train"] | {
        "output": before["steps"]["train"]["output"] | {"checkpoint": str(best)}}
    assert after["steps"]["evaluate"]["task_id"] not in ("offline-killed",
                                                         before["steps"]["evaluate"]["task_id"])
    assert after["steps"]["register"]["output"]["model_id"] == before["steps"]["train"]["output"]["model_id"]
    assert after["resumes"] == [{"time": after["resumes"][0]["time"], "changes": {},
                                 "reused": ["data_prep", "tokenize", "train"]}]
    assert best.read_bytes() == weights
    # moved
    assert json.loads((run_dir / "config.json").read_text()) == config | {"output_dir": str(run_dir.parent)}


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason="needs a machine without CUDA, where training.device=cuda is refused")
def test_a_resume_refused_at_its_start_leaves_config_and_status_as_they_were(tiny_runs, tmp_path):
    run_dir = copy_run(tiny_runs.run_dirs[0], tmp_path / "runs")
    before = {name: (run_dir / name).read_bytes() for name in ("config.json", "status.json")}
    proc = run_src_main(["train", "--resume", str(run_dir), "training.device=cuda", "training.max_steps=40"],
                        tiny_runs.env, 120)
    assert proc.returncode == 1 and "device 'cuda' asked for, but no CUDA device is available" in proc.stderr
    assert {name: (run_dir / name).read_bytes() for name in before} == before


def test_a_resume_reuses_every_completed_step_its_changes_do_not_touch():
    from pipelines.in_process import reusable

    done = {"status": "completed", "output": {}}
    killed_in_evaluate = {"steps": {"data_prep": done, "tokenize": done, "train": done,
                                    "evaluate": {"status": "running"}}}
    assert reusable(killed_in_evaluate, {}) == ["data_prep", "tokenize", "train"]
    completed = {"steps": {name: done for name in ("data_prep", "tokenize", "train", "evaluate", "register")}}
    assert reusable(completed, {"training.max_steps": (30, 40)}) == ["data_prep", "tokenize"]  # trains on
    assert reusable(completed, {"evaluation.beam_size": (2, 4)}) == ["data_prep", "tokenize", "train"]
    assert reusable(completed, {"evaluation.valid_max_tokens": (None, 9)}) == ["data_prep", "tokenize"]
    assert reusable(completed, {"tracking.tags": ([], ["x"])}) == ["data_prep", "tokenize", "train",
                                                                   "evaluate"]
