"""Every step task carries user properties (the experiments table's sortable columns): task, family, the
code's commit, and the parameter count where the step has the model."""

import json
import re
import zipfile

from src.experiment import load_config

STEPS = ("data_prep", "tokenize", "train", "evaluate", "register")


def properties(run_dir, step: str) -> dict[str, str]:
    (session,) = (run_dir / step / "clearml_offline").glob("*.zip")
    with zipfile.ZipFile(session) as archive:
        task = json.loads(archive.read("task.json"))
    return {name: entry["value"] for name, entry in task["hyperparams"]["properties"].items()}


def test_each_steps_session_holds_the_runs_properties(tiny_runs):
    cfg = load_config("config/tiny.yaml")
    run_dir = tiny_runs.run_dirs[0]
    checkpoint_parameters = None
    for step in STEPS:
        found = properties(run_dir, step)
        assert found["task"] == cfg.task and found["family"] == cfg.model.family, step
        assert re.fullmatch(r"[0-9a-f]{12}(\+dirty)?|unknown", found["commit"]), found["commit"]
        if step in ("train", "evaluate"):  # the trained model, and the one rebuilt from its checkpoint
            assert int(found["parameters"]) > 0
            checkpoint_parameters = checkpoint_parameters or found["parameters"]
            assert found["parameters"] == checkpoint_parameters
        else:
            assert "parameters" not in found, step
