"""Clone, edit, enqueue on real agents: a finished train step, cloned and edited as the web UI edits it.

Against the ClearML stand-in (tests/clearml_stub) with a real ``clearml-agent daemon``. The train
step's task is made the way the controller makes it: ``train --queue gpu`` stores the pipeline
(DAG and step definitions) on the controller task; data_prep and tokenize run here in tasks opened
as the function-step wrapper opens them; the train task is created from its stored definition with
the DAG's parameters resolved, and an agent runs it to completion. Then it is cloned
(``Task.clone``), edited with ``tasks.edit_hyper_params`` (the call the web UI makes: every value a
string) and enqueued; the same agent runs the clone.
"""

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from src.config.queues import load_queue_config
from tests.clearml_stub.stub import ClearMLStub, kill_process_group
from tests.pipelines.test_pipeline_server import (FAST, OUTPUT_DIR, PROJECT, TASK, agent_logs, run_cli,
                                                  wait_done)

REPO = Path(__file__).resolve().parents[2]

# The edits a person makes in the web UI, as the UI sends them: strings. One per kind of value.
EDITS = {
    "training/lr": "0.01",  # a float, as a string (clearml #1238)
    "training/betas": "[0.8, 0.95]",  # a list
    "model/norm_first": "True",  # a bool
    # None for an optional float: the SDK's own cast (float("None")) fails and keeps 1.0 (clearml #1175)
    "training/grad_clip": "None",
}

HANDOFF = '''
"""data_prep and tokenize as the function-step wrapper runs them; the train task as the controller makes it.

Every parameter comes from the stored DAG ("${{pipeline.X}}" from the controller's Args,
"${{step.id}}" from the tasks made here), so this follows whatever the pipeline passes its steps.
"""
import json, re
from clearml import Task
from src.steps import run_pipeline_step

plan = json.loads(open({plan_file!r}).read())
task_ids, outputs = {{}}, {{}}

def resolved(name):
    def one(value):
        value = re.sub(r"\\$\\{{pipeline\\.(\\w+)\\}}", lambda m: plan["args"][m.group(1)], value)
        return re.sub(r"\\$\\{{(\\w+)\\.id\\}}", lambda m: task_ids[m.group(1)], value)
    return {{k: one(v) for k, v in plan["dag"][name]["parameters"].items()}}

for name in ("data_prep", "tokenize"):
    definition = plan["definitions"][name]
    task = Task.init(project_name=plan["project"], task_name=definition["name"], task_type=definition["type"],
                     auto_connect_frameworks=False, output_uri=True)
    params = resolved(name)
    kwargs = {{k.split("/", 1)[1]: v for k, v in params.items() if k.startswith("kwargs/")}}
    inputs = {{k.split("/", 1)[1]: outputs[v.split(".")[0]] for k, v in params.items()
              if k.startswith("kwargs_artifacts/")}}
    outputs[task.id] = run_pipeline_step(**kwargs, **inputs)
    task.upload_artifact("output", artifact_object=outputs[task.id], extension_name=".pkl",
                         wait_on_upload=True)
    task_ids[name] = task.id
    task.close()

definition = plan["definitions"]["train"]
train = Task.create(project_name=plan["project"], task_name=definition["name"], task_type=definition["type"])
train.update_task(definition)
train.update_parameters(resolved("train"))
Task.enqueue(train, queue_name=plan["dag"]["train"]["queue"])
print("IDS", json.dumps({{**task_ids, "train": train.id}}))
'''

CLONE = '''
import json
from clearml import Task
from clearml.backend_api.session.client import APIClient

source = Task.get_task(task_id={source!r})
clone = Task.clone(source_task=source, name=source.name + " (edited)")
edits = json.loads({edits!r})
# what the web UI sends when a value is edited: section, name and the typed text
APIClient().tasks.edit_hyper_params(task=clone.id, hyperparams=[
    {{"section": key.split("/", 1)[0], "name": key.split("/", 1)[1], "value": value}}
    for key, value in edits.items()])
Task.enqueue(clone, queue_name={queue!r})
print("CLONE", clone.id)
'''


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClearMLStub]:
    with ClearMLStub(tmp_path_factory.mktemp("clearml_stub")) as server:
        for name in load_queue_config(REPO / "queues" / "queues.yaml").queue_names:
            server.add_queue(name)
        yield server


@pytest.fixture(scope="module")
def agent(stub: ClearMLStub) -> Iterator[Path]:
    """One agent on the gpu queue for the whole module; its log file."""
    log = stub.workdir / "agent-gpu.log"
    proc = stub.start_agent("gpu", ["gpu"], log, from_checkout=False)
    yield log
    kill_process_group(proc)


def _ids(stdout: str, tag: str) -> str:
    return next(line[len(tag) + 1:] for line in stdout.splitlines() if line.startswith(tag + " "))


@pytest.fixture(scope="module")
def finished_train(stub: ClearMLStub, agent: Path) -> SimpleNamespace:
    """A train step task the agent ran to completion, made as the pipeline makes it."""
    start = time.perf_counter()
    proc = run_cli(stub, ["train", "--queue", "gpu", "--config", "config/tiny.yaml", OUTPUT_DIR, *FAST],
                   timeout=120)
    assert proc.returncode == 0, proc.stderr[-5000:]
    (controller,) = [t for t in stub.tasks if t["type"] == "controller"]
    dag = json.loads(controller["configuration"]["Pipeline"]["value"])
    plan = {"project": PROJECT, "dag": dag,
            "args": {k.split("/", 1)[1]: v for k, v in stub.hyperparams(controller["id"]).items()
                     if k.startswith("Args/")},
            "definitions": {name: json.loads(controller["configuration"][name]["value"])
                            for name in ("data_prep", "tokenize", "train")}}
    plan_file = stub.workdir / "plan.json"
    plan_file.write_text(json.dumps(plan))
    result = stub.run_python(HANDOFF.format(plan_file=str(plan_file)), timeout=200)
    assert result.returncode == 0, result.output
    ids = json.loads(_ids(result.stdout, "IDS"))
    train = wait_done(stub, ids["train"], timeout=240)
    assert train["status"] == "completed", agent_logs(stub)
    return SimpleNamespace(task=train, ids=ids, seconds=time.perf_counter() - start)


def checkpoint_config(stub: ClearMLStub, task_id: str) -> dict:
    """The config stored in the checkpoint the task uploaded (its weights artifact)."""
    import torch

    weights = stub.file_for_url(stub.artifacts(task_id)[f"{TASK}-weights"]["uri"])
    assert weights, f"task {task_id} uploaded no weights"
    return json.loads(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=False)["config"])


def model_design(stub: ClearMLStub, task_id: str) -> dict:
    """The config the task registered its model with (the model's design, HOCON text as the SDK stores it)."""
    from clearml.utilities.pyhocon import ConfigFactory

    (model,) = [m for m in stub.models if m["task"] == task_id]
    return ConfigFactory.parse_string(model["design"]["design"]).as_plain_ordered_dict()


def lr_series(stub: ClearMLStub, task_id: str) -> dict[int, float]:
    return {it: value for title, series, it, value in stub.scalars(task_id)
            if (title, series) == ("learning_rate", "lr")}


@pytest.mark.timeout(600)
def test_a_cloned_train_step_runs_the_values_edited_as_the_web_ui_edits_them(stub, agent, finished_train):
    """~2 min on a loaded 2-core machine: two 4-step trainings on the agent (the original, the clone)."""
    original = finished_train.task
    # only the config/... copy: the kwargs copy is sealed by its digest (a hand edit of it is refused,
    # tests/steps/test_parameters.py), so config/... is the one a person edits and the one that runs
    edits = {f"config/{key}": value for key, value in EDITS.items()}
    result = stub.run_python(CLONE.format(source=original["id"], edits=json.dumps(edits), queue="gpu"),
                             timeout=60)
    assert result.returncode == 0, result.output
    clone_id = _ids(result.stdout, "CLONE")
    clone = wait_done(stub, clone_id, timeout=300)
    assert clone["status"] == "completed", agent_logs(stub)
    assert clone["parent"] == original["id"]  # Task.clone: the source is the parent

    before = checkpoint_config(stub, original["id"])
    used = checkpoint_config(stub, clone_id)
    edited = {"lr": used["training"]["lr"], "betas": used["training"]["betas"],
              "norm_first": used["model"]["norm_first"], "grad_clip": used["training"]["grad_clip"]}
    assert edited == {"lr": 0.01, "betas": [0.8, 0.95], "norm_first": True, "grad_clip": None}
    assert (before["training"]["lr"], before["training"]["grad_clip"], before["model"]["norm_first"]) == (
        0.003, 1.0, False)
    # nothing else changed
    for section in ("training", "model"):
        rest = {k: v for k, v in used[section].items() if k not in ("lr", "betas", "grad_clip", "norm_first")}
        assert rest == {k: before[section][k] for k in rest}, section
    # the model's recorded config is the one that ran
    design = model_design(stub, clone_id)
    assert (design["training"]["lr"], design["training"]["grad_clip"], design["model"]["norm_first"]) == (
        0.01, None, True)

    # the learning-rate scalar follows the edited lr: the same schedule, scaled by 0.01 / 0.003
    old, new = lr_series(stub, original["id"]), lr_series(stub, clone_id)
    assert old and set(new) == set(old)
    for step, value in new.items():
        assert value == pytest.approx(old[step] * 0.01 / 0.003, rel=1e-6), step
    log = agent.read_text()
    assert re.search(r"step train: training\.lr=0\.01 from the task's 'config' parameters \(its arguments "
                     r"said 0\.003\)", log), log[-4000:]
    assert stub.unknown_calls == []


# --- the sweep's optimizer path: ClearML's optimizer clones the train step, agents run the trials ---------
@pytest.mark.slow  # about 1.5 min here: two 4-step trials, one after the other on the module's agent
@pytest.mark.timeout(600)
def test_sweep_trials_run_on_agents_as_children_of_the_sweep_task(stub, agent, finished_train, tmp_path):
    import yaml

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"training.lr": {"low": 1e-3, "high": 2e-2, "log": True},
                                     "training.warmup_steps": {"low": 1, "high": 3, "int": True}}))
    proc = run_cli(stub, ["sweep", "--config", "config/tiny.yaml", "--trials", "2", "--space", str(space),
                          "--queue", "gpu", "--base-task", finished_train.task["id"], "--concurrency", "2",
                          "--time-limit", "8", "--pool-period", "0.02", "--study-name", "agents"],
                   timeout=560)
    assert proc.returncode == 0, proc.stderr[-5000:] + agent_logs(stub)
    result = json.loads(proc.stdout)
    sweep_task = stub.task_by_name("agents")
    assert (result["base_task_id"], result["task_id"], sweep_task["type"]) == (
        finished_train.task["id"], sweep_task["id"], "optimizer")

    trials = [t for t in stub.tasks if t["parent"] == sweep_task["id"]]
    assert len(trials) == 2, [(t["name"], t["parent"]) for t in stub.tasks]
    assert [t["status"] for t in trials] == ["completed", "completed"], agent_logs(stub)
    objectives = {}
    for trial in trials:
        params = stub.hyperparams(trial["id"])
        ran = checkpoint_config(stub, trial["id"])["training"]
        # the agent ran the values the optimizer set on the clone
        assert ran["lr"] == pytest.approx(float(params["config/training/lr"]))
        assert 1e-3 <= ran["lr"] <= 2e-2 and ran["lr"] != 0.003
        assert ran["warmup_steps"] == int(float(params["config/training/warmup_steps"]))
        valid = [v for title, series, _, v in stub.scalars(trial["id"]) if (title, series) == ("valid",
                                                                                                 "loss")]
        objectives[trial["id"]] = min(valid)
    # the optimizer read each trial's objective back from the stand-in, best first
    top = [(row["task_id"], row["metrics"]["valid/loss"]) for row in result["top"]]
    assert [task_id for task_id, _ in top] == sorted(objectives, key=objectives.get)
    for task_id, metric in top:
        assert metric["min_value"] == pytest.approx(objectives[task_id])
    assert stub.unknown_calls == []
