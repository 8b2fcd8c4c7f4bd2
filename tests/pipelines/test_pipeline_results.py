"""Results where reviewers look: the register step's headline metric and HTML report, and what the ClearML
pipeline task copies from its steps (``monitor_metrics``, ``monitor_models``, ``monitor_artifacts``).

The default tests read the session's ``tiny_runs``: the names the pipeline monitors must be what the steps
record. The slow test runs the pipeline on real agents against the stand-in (tests/clearml_stub) and reads
the controller's own task.
"""

import json
from pathlib import Path

import pytest

from pipelines.pipeline import pipeline_plan
from src.experiment import load_config
from src.steps.table import HEADLINE, REPORT_ARTIFACT
from tests.clearml_session import read_offline_session
from tests.pipelines.test_pipeline_server import (  # noqa: F401 (start_agent: a fixture, used by name)
    FAST,
    OUTPUT_DIR,
    STEP_NAMES,
    TASK,
    agent_logs,
    clearml_stub,
    run_cli,
    start_agent,
    wait_done,
)

pytestmark = pytest.mark.timeout(300)


def session(run_dir, step: str):
    (zip_path,) = (run_dir / step / "clearml_offline").glob("*.zip")
    return read_offline_session(zip_path)


def test_the_register_step_records_the_headline_metric_and_the_report(tiny_runs):
    run_dir = tiny_runs.run_dirs[0]
    register = session(run_dir, "register")
    registration = json.loads((run_dir / "status.json").read_text())["steps"]["register"]["output"]
    # the gate's metric (BLEU for translation), under the one name the pipeline task monitors
    assert register.scalars[HEADLINE] == [(0, pytest.approx(registration["bleu"]))]
    properties = register.hyperparameters["properties"]
    assert (properties["gate_metric"], properties["stage"]) == ("BLEU", registration["stage"])
    # the report, with this step's decision, inside the session (so import-offline uploads it)
    report = register.read_bytes(register.artifacts[REPORT_ARTIFACT]).decode("utf-8")
    assert f"Run report: {run_dir.name}" in report and registration["reason"] in report
    assert "<h2>Registry decision</h2>" in report and "<h2>Test metrics</h2>" in report
    # the run folder keeps its own copy, written again when the run ends: the same page, the final status
    final = (run_dir / REPORT_ARTIFACT).read_text(encoding="utf-8")
    assert "status completed" in final and "status running" in report


def test_the_pipeline_monitors_what_the_steps_record(tiny_runs):
    """Each ``monitor_*`` name of the plan is a scalar, model or artifact that its step's task holds."""
    cfg = load_config("config/tiny.yaml")
    plan = {step["name"]: step["monitor"] for step in pipeline_plan(cfg, queue=None)["steps"]}
    # the task's model entry is named after the weights file (the SDK's tasks.add_or_update_model), shown
    # on the pipeline under the model's own name
    assert plan["train"] == {"monitor_models": [("best", cfg.tracking.model_name)]}
    assert plan["register"]["monitor_metrics"] == [HEADLINE]
    assert {name for name, monitors in plan.items() if monitors} == {"train", "register"}
    run_dir = tiny_runs.run_dirs[0]
    train, register = session(run_dir, "train"), session(run_dir, "register")
    assert plan["train"]["monitor_models"] == [(Path(model.weights_file).stem, model.name)
                                               for model in train.models]
    assert set(plan["register"]["monitor_artifacts"]) <= set(register.artifacts)
    assert all(key in register.scalars for key in plan["register"]["monitor_metrics"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_pipeline_task_shows_the_headline_metric_the_model_and_the_report(clearml_stub, start_agent):  # noqa: F811
    """The whole pipeline on agents (~3 min on a loaded 2-core machine); the controller's task then holds the
    register step's headline scalar, the train step's model and the report artifact."""
    for name in ("services", "cpu", "gpu"):
        clearml_stub.add_queue(name)
    proc = run_cli(clearml_stub,
                   ["train", "--queue", "gpu", "--config", "config/tiny.yaml", OUTPUT_DIR, *FAST], timeout=90)
    assert proc.returncode == 0, proc.stderr[-5000:]
    (controller,) = clearml_stub.tasks
    start_agent(clearml_stub, "services", ["services"], from_checkout=True)
    start_agent(clearml_stub, "worker", ["cpu", "gpu"], from_checkout=False)
    controller = wait_done(clearml_stub, controller["id"], timeout=540)
    steps = {name: clearml_stub.task_by_name(f"{TASK}-{name}") for name in STEP_NAMES}
    assert controller["status"] == "completed", agent_logs(clearml_stub)

    registration = json.loads(clearml_stub.file_for_url(
        clearml_stub.artifacts(steps["register"]["id"])["registration"]["uri"]))
    headline = [(iteration, value) for title, series, iteration, value
                in clearml_stub.scalars(controller["id"]) if (title, series) == HEADLINE]
    assert headline == [(0, pytest.approx(registration["bleu"]))]
    (model,) = clearml_stub.models  # the train step's model, shown on the pipeline (no second model)
    assert {"name": TASK, "model": model["id"]} in controller["models"]["output"]
    report = clearml_stub.artifacts(controller["id"])[REPORT_ARTIFACT]
    assert report["uri"] == clearml_stub.artifacts(steps["register"]["id"])[REPORT_ARTIFACT]["uri"]
    text = clearml_stub.file_for_url(report["uri"]).decode("utf-8")
    # fetched on the register agent from the parents' artifacts: the training curve and the test metrics
    assert "Run report:" in text and registration["reason"] in text
    assert "<h2>Training curves</h2>" in text and "<h2>Test metrics</h2>" in text
    assert clearml_stub.unknown_calls == []
