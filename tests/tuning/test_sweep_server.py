"""``sweep --queue``: ClearML's optimizer clones the train step's task per trial and enqueues the clones.

Against the loopback stand-in (tests/clearml_stub): no agent serves the queue, so the trials stay
queued until the optimizer's time limit stops it. Everything that talks to the stand-in runs in a
subprocess under a hard timeout (its process group is SIGKILLed).
"""

import json
import os
import subprocess
import sys

import pytest

from src.config import config_to_dict
from src.experiment import load_config
from tests.clearml_stub import fixture as stub_fixtures
from tests.clearml_stub.stub import REPO_ROOT, ClearMLStub, kill_process_group, run_src_main

clearml_stub = stub_fixtures.clearml_stub
SPACE = {"training.lr": {"low": 1e-4, "high": 3e-3, "log": True}, "model.n_heads": {"choices": [2, 4]},
         "training.warmup_steps": {"low": 10, "high": 200, "int": True}}


def base_train_task(stub: ClearMLStub, name: str, *overrides: str) -> str:
    """A train step's task on the stand-in: the tiny config connected as section ``config``, as the step
    does."""
    config = json.dumps(config_to_dict(load_config(REPO_ROOT / "config" / "tiny.yaml", list(overrides))))
    result = stub.run_python(
        "import json\nfrom src.tracking import Tracker\n"
        f"tracker = Tracker.start(project='stepwise-transformers', task_name={name!r}, offline=False)\n"
        f"tracker.connect_config(json.loads({config!r}), name='config')\n"
        "print('TASK', tracker.task_id)\ntracker.close()\n", timeout=60)
    assert result.returncode == 0, result.output
    return next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("TASK "))


@pytest.mark.slow  # about 35 s: the optimizer's own polling, against the stand-in
@pytest.mark.timeout(180)
def test_queue_path_clones_the_base_task_and_enqueues_the_trials(clearml_stub: ClearMLStub, tmp_path):
    """About 35 s here: two candidate tasks; the optimizer finds the train step's (no --base-task), queues 2
    clones and stops at its 0.4-minute limit. The base task trains 77 steps, the local --config 30: a trial's
    iteration limit follows the task that is cloned (78, one beyond its last validation), not the local
    file."""
    import yaml

    clearml_stub.add_queue("trials")
    base_train_task(clearml_stub, "transformer-de-en-train-old")  # another name: not the one to clone
    # tiny's train step, as the pipeline names it, run with a longer schedule than the local config/tiny.yaml
    base_id = base_train_task(clearml_stub, "transformer-de-en-train", "training.max_steps=77")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    cmd = [sys.executable, "-m", "src.main", "sweep", "--config", "config/tiny.yaml", "--trials", "2",
           "--space",
           str(space), "--queue", "trials", "--concurrency", "2", "--time-limit", "0.4",
           "--pool-period", "0.02", "--study-name", "q"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=clearml_stub.subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        def both_queued() -> list[str] | None:
            entries = clearml_stub.queue_entries("trials")
            return entries if len(entries) == 2 else None

        queued = clearml_stub.wait_for(both_queued, timeout=120, what="two trials on the queue")
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        kill_process_group(proc)
    assert proc.returncode == 0, stderr[-4000:]
    optimizer = clearml_stub.task_by_name("q")
    trials = [t for t in clearml_stub.tasks if t["id"] in queued]
    base = next(t for t in clearml_stub.tasks if t["id"] == base_id)
    assert len(trials) == 2 and optimizer["type"] == "optimizer"
    for task in trials:
        # a clone of the base task (its code and type), a child of the optimizer's task
        assert (task["name"].startswith("transformer-de-en-train: config/")
                and task["script"] == base["script"])
        assert (task["type"], task["parent"]) == ("training", optimizer["id"])
        params = clearml_stub.hyperparams(task["id"])
        lr, heads, warmup = (params["config/training/lr"], params["config/model/n_heads"],
                             params["config/training/warmup_steps"])
        assert 1e-4 <= float(lr) <= 3e-3 and float(lr) != 0.003  # sampled, not the base task's 0.003
        assert int(float(heads)) in (2, 4) and 10 <= int(float(warmup)) <= 200
        assert params["config/model/d_model"] == "32"  # the rest of the base task's config is kept
        history = clearml_stub.status_history(task["id"])
        assert "queued" in history and history[-1] == "stopped"  # not started by the time limit: stopped
        assert ({p["id"]: p["name"] for p in clearml_stub.projects}[task["project"]]
                == "stepwise-transformers/sweep-q")
    assert json.loads(stdout)["base_task_id"] == base_id
    # the optimizer connects its arguments to its own task: the per-trial iteration limit is the base task's +
    # 1
    connected = clearml_stub.hyperparams(optimizer["id"])
    assert connected["General/opt/optimizer_kwargs/max_iteration_per_job"] == "78", connected
    # the stand-in serves every call the optimizer made (its reporter reads the trials' scalar histograms)
    assert clearml_stub.unknown_calls == []


@pytest.mark.timeout(60)
def test_queue_path_refuses_to_run_offline(tmp_path):
    """No server configured (an empty HOME, no CLEARML_* variables): a clear refusal, nothing cloned or
    trained."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))} | {
        "HOME": str(tmp_path)}
    result = run_src_main(["sweep", "--config", "config/tiny.yaml", "--trials", "2", "--queue", "trials",
                           "--output-dir", str(tmp_path / "sweeps")], env, timeout=50)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "sweep --queue needs a ClearML server" in result.stderr and "without --queue" in result.stderr
    assert result.stdout == "" and not (tmp_path / "sweeps").exists()


@pytest.mark.timeout(60)
def test_queue_path_refuses_a_log_int_range_before_any_server_call(tmp_path):
    """ClearML has no log-int range (its log range draws floats the int field rejects): refused with the key
    named, before the server check (none is configured here) and with nothing written."""
    import yaml

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"training.warmup_steps": {"low": 10, "high": 200, "int": True,
                                                               "log": True},
                                     "training.lr": {"low": 1e-4, "high": 3e-3, "log": True}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))} | {
        "HOME": str(tmp_path)}
    result = run_src_main(["sweep", "--config", "config/tiny.yaml", "--trials", "2", "--space", str(space),
                           "--queue", "trials", "--output-dir", str(tmp_path / "sweeps")], env, timeout=50)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "cannot search config/training/warmup_steps as a log-scaled int" in result.stderr
    assert "config/training/lr" not in result.stderr  # a float log range is fine
    assert result.stdout == "" and not (tmp_path / "sweeps").exists()
