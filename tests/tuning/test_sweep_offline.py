"""``sweep --trials 4`` offline: four trial sessions in the sweep sub-project, the study and the best
config."""

import os
import sqlite3
from pathlib import Path

import optuna
import pytest
import yaml

from src.experiment import load_config
from tests.clearml_session import read_offline_session
from src.tuning.space import apply_params
from tests.clearml_stub.stub import run_src_main

TINY = ["training.max_steps=6", "training.eval_every=3", "training.checkpoint_every=3",
        "training.warmup_steps=2",
        "tracking.heatmap_every=6", "tracking.grad_norm_every=3"]


def clean_env(home: Path) -> dict[str, str]:
    """No ClearML server configured anywhere: an empty HOME, no CLEARML_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    home.mkdir(parents=True, exist_ok=True)
    return env | {"HOME": str(home), "CLEARML_CACHE_DIR": str(home / "clearml_cache"),
                  "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sweep_four_trials_offline_leaves_sessions_study_and_best_config(tmp_path):
    """55-90 s measured on a shared 2-core machine (4 trials of 6 steps, each its own ClearML offline task).
    A subprocess: in-process offline tasks leave reporter threads."""
    out = tmp_path / "sweeps"
    result = run_src_main(["sweep", "--config", "config/tiny.yaml", "--trials", "4", "--study-name", "t4",
                           "--output-dir", str(out), "--threads", "1", *TINY],
                          clean_env(tmp_path / "home"), timeout=560)
    assert result.returncode == 0, result.stderr[-4000:]
    sweep = out / "t4"

    # the study: 4 trials in sqlite, each COMPLETE or PRUNED, the first two complete (the pruner waits for 2)
    study = optuna.load_study(study_name="t4", storage=f"sqlite:///{sweep / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert len(states) == 4 and states[:2] == ["COMPLETE", "COMPLETE"] and set(states) <= {"COMPLETE",
                                                                                           "PRUNED"}
    assert set(study.trials[0].params) == {"training.lr", "model.dropout", "model.n_heads",
                                           "training.warmup_steps"}

    # one offline session per trial, in <project>/sweep-<study>, holding that trial's values and validation
    # curve
    for trial in study.trials:
        zips = list((sweep / f"trial_{trial.number:03d}" / "clearml_offline").glob("*.zip"))
        assert len(zips) == 1, zips
        session = read_offline_session(zips[0])
        assert session.task["project_name"] == "stepwise-transformers/sweep-t4"
        assert session.task["name"] == f"t4-trial-{trial.number:03d}" and "sweep-t4" in session.task["tags"]
        assert float(session.hyperparameters["trial"]["training/lr"]) == pytest.approx(
            trial.params["training.lr"])
        assert session.hyperparameters["config"]["model/n_heads"] == str(trial.params["model.n_heads"])
        curve = dict(session.scalars[("valid", "loss")])
        assert curve == pytest.approx(trial.intermediate_values)  # what the pruner saw is what the task shows
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(min(curve.values())) and max(curve) == 6
        else:
            assert max(curve) < 6 and trial.user_attrs["steps"] < 6

    # the parent task holds the study file, the trials table and the best config
    parent = read_offline_session(next((sweep / "clearml_offline").glob("*.zip")))
    assert (parent.task["name"], parent.task["type"]) == ("t4", "optimizer")
    assert {"study", "trials", "trials_json", "best_config"} <= set(parent.artifacts)
    with sqlite3.connect(sweep / "study.db") as db:
        assert db.execute("select count(*) from trials").fetchone() == (4,)
    table = (sweep / "trials.csv").read_text().splitlines()
    assert len(table) == 5 and table[0].startswith("number,state,value,params.model.dropout")

    # the best config: the base config with the best trial's values, loadable by train --config
    best = study.best_trial
    written = load_config(sweep / "best_config.yaml")
    base = load_config("config/tiny.yaml", TINY)
    assert written == apply_params(base, best.params)
    assert yaml.safe_load((sweep / "best_config.yaml").read_text())["training"]["max_steps"] == 6

    # stdout is the command's output alone: the table, then the paths
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["#", "state", "valid"] and len([x for x in lines if x[:1].isdigit()]) == 4
    assert lines[-1] == f"best config: {sweep / 'best_config.yaml'}"
