"""Every step task carries user properties (the experiments table's sortable columns): task, family, the
code's commit, the data version (``dataset_id``), and the parameter count where the step has the model."""

import json
import re
import zipfile

from src.experiment import load_config, validate_config

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
        assert found["dataset_id"] == properties(run_dir, "data_prep")["dataset_id"], step
        if step in ("train", "evaluate"):  # the trained model, and the one rebuilt from its checkpoint
            assert int(found["parameters"]) > 0
            checkpoint_parameters = checkpoint_parameters or found["parameters"]
            assert found["parameters"] == checkpoint_parameters
        else:
            assert "parameters" not in found, step


def test_the_dataset_id_names_the_data_version(tiny_runs, monkeypatch):
    """The same data gives the same id in both runs; another data section gives another one."""
    from src.config import config_to_dict
    from src.runs import step_cache

    monkeypatch.delenv("STEPWISE_DATA_DIR", raising=False)  # as the runs had it (tests/pipelines/conftest.py)
    first, second = (properties(run_dir, "train")["dataset_id"] for run_dir in tiny_runs.run_dirs)
    assert first == second
    config = config_to_dict(validate_config(json.loads((tiny_runs.run_dirs[0] / "config.json").read_text())))
    shaped_by = ("task", "data")
    assert step_cache.step_key("data_prep", config, shaped_by) == first
    other = config | {"data": config["data"] | {"max_chars": config["data"]["max_chars"] - 1}}
    assert step_cache.step_key("data_prep", other, shaped_by) != first
