"""Step cache keys and edited pipeline parameters, on real agents against the ClearML stand-in.

One stand-in, one services agent (the controllers) and one cpu+gpu agent (the steps) serve three
pipeline runs in turn:

1. ``train --queue gpu`` on config/tiny.yaml: every step runs;
2. the same with ``training.lr`` changed: ClearML reuses data_prep and tokenize (their parameters,
   hence their cache keys, are unchanged) and runs train, evaluate and register again;
3. the first run's controller cloned, its ``tokenizer/vocab_size`` parameter edited as the web UI
   stores it (a string) and enqueued: tokenize runs again with the edited value, data_prep is reused;
and (a test of its own) a clone with ``training/lr`` edited to ``"abc"`` fails on the services agent
in one line naming the key, before any step task exists.

The agents run tasks in this interpreter from this checkout (see test_pipeline_server.py).
"""

import json

import pytest

from tests.clearml_stub import fixture as stub_fixtures
from tests.clearml_stub.stub import ClearMLStub
from tests.pipelines import test_pipeline_server as server

clearml_stub = stub_fixtures.clearml_stub  # the stand-in's fixtures, by assignment
start_agent = server.start_agent
STEP_NAMES = server.STEP_NAMES

CLONE_AND_EDIT = """
from clearml import Task
clone = Task.clone(source_task={controller!r}, name="edited run")
clone.set_parameter({name!r}, {value!r})  # the web UI stores every edit as a string
Task.enqueue(clone, queue_name="services")
print("CLONE", clone.id)
"""


def enqueue(stub: ClearMLStub, *overrides: str) -> dict:
    """``train --queue gpu`` with ``overrides``; the controller task it queued."""
    before = {t["id"] for t in stub.tasks}
    proc = server.run_cli(stub, ["train", "--queue", "gpu", "--config", "config/tiny.yaml", server.OUTPUT_DIR,
                                 *server.FAST, *overrides], timeout=90)
    assert proc.returncode == 0, proc.stderr[-5000:]
    (controller,) = [t for t in stub.tasks if t["id"] not in before]
    return controller


def clone_and_edit(stub: ClearMLStub, controller: dict, name: str, value: str) -> dict:
    result = stub.run_python(CLONE_AND_EDIT.format(controller=controller["id"], name=name, value=value),
                             timeout=60)
    assert result.returncode == 0, result.output
    clone_id = next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("CLONE "))
    return next(t for t in stub.tasks if t["id"] == clone_id)


def run_of(stub: ClearMLStub, controller: dict) -> dict[str, dict]:
    """The step tasks a finished controller used, by step: made by it, or reused from the cache."""
    done = server.wait_done(stub, controller["id"], timeout=540)
    assert done["status"] == "completed", f"{done['status']}\n{server.agent_logs(stub)}"
    dag = json.loads(done["configuration"]["Pipeline"]["value"])
    tasks = {t["id"]: t for t in stub.tasks}
    return {name: tasks[dag[name]["job_id"]] for name in STEP_NAMES}


def learning_rates(stub: ClearMLStub, task: dict) -> dict[int, float]:
    return {step: value for title, series, step, value in stub.scalars(task["id"])
            if (title, series) == ("learning_rate", "lr")}


def connected(stub: ClearMLStub, task: dict, key: str) -> str:
    return stub.hyperparams(task["id"])[f"config/{key}"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_steps_are_reused_while_their_parameters_stand_and_edits_take_effect(clearml_stub, start_agent):
    """5 to 11 min on a shared 2-core machine: three pipeline runs."""
    stub = clearml_stub
    for name in ("services", "cpu", "gpu"):
        stub.add_queue(name)
    start_agent(stub, "services", ["services"], from_checkout=True)
    worker_log = start_agent(stub, "worker", ["cpu", "gpu"], from_checkout=False)

    first_controller = enqueue(stub)
    first = run_of(stub, first_controller)
    assert {t["parent"] for t in first.values()} == {first_controller["id"]}
    assert set(json.loads(first["data_prep"]["hyperparams"]["kwargs"]["config"]["value"])) == {"task", "data"}
    # the data steps' tasks connect their parameters only; train connects the whole config
    assert not any(key.startswith(("config/training/", "config/tracking/"))
                   for key in stub.hyperparams(first["data_prep"]["id"]))
    assert connected(stub, first["train"], "training/lr") == "0.003"

    # 2. training.lr changed: the data steps' cache keys stand
    second_controller = enqueue(stub, "training.lr=0.002")
    second = run_of(stub, second_controller)
    controller_log = (stub.workdir / "agent-services.log").read_text()
    for name in ("data_prep", "tokenize"):
        assert second[name]["id"] == first[name]["id"], f"{name} ran again:\n{server.agent_logs(stub)}"
        assert (f"step {name}: reused task {first[name]['id']} from ClearML's step cache (same code and "
                "parameters)") in controller_log
    for name in ("train", "evaluate", "register"):
        assert second[name]["id"] != first[name]["id"] and second[name]["parent"] == second_controller["id"]
        assert second[name]["status"] == "completed", name
    assert connected(stub, second["train"], "training/lr") == "0.002"
    # the edited rate drove training: the same schedule, scaled by 0.002 / 0.003
    first_lr, second_lr = (learning_rates(stub, run["train"]) for run in (first, second))
    assert first_lr and set(first_lr) == set(second_lr)
    assert {step: second_lr[step] / first_lr[step] for step in first_lr} == pytest.approx(
        {step: 2 / 3 for step in first_lr})

    # 3. a cloned pipeline run, tokenizer/vocab_size edited as a string: tokenize runs, data_prep is reused
    third_controller = clone_and_edit(stub, first_controller, "Args/tokenizer/vocab_size", "400")
    third = run_of(stub, third_controller)
    assert third["data_prep"]["id"] == first["data_prep"]["id"]
    for name in ("tokenize", "train", "evaluate", "register"):
        assert third[name]["parent"] == third_controller["id"], name
    assert connected(stub, third["tokenize"], "tokenizer/vocab_size") == "400"
    assert connected(stub, third["train"], "tokenizer/vocab_size") == "400"
    assert connected(stub, third["train"], "training/lr") == "0.003"  # the clone's other parameters
    assert "vocab 400 -> " in worker_log.read_text()  # the tokenizer was trained with the edited size

    assert stub.unknown_calls == []


# about 15 s: one controller on a services agent
@pytest.mark.timeout(300)
def test_a_bad_edit_fails_the_pipeline_before_any_step_task_exists(clearml_stub, start_agent):
    stub = clearml_stub
    for name in ("services", "cpu", "gpu"):
        stub.add_queue(name)
    controller = enqueue(stub)
    stub.run_python(f"from clearml import Task; Task.dequeue({controller['id']!r})", timeout=60)
    bad = clone_and_edit(stub, controller, "Args/training/lr", "abc")
    start_agent(stub, "services", ["services"], from_checkout=True)

    done = server.wait_done(stub, bad["id"], timeout=240)
    assert done["status"] == "failed"
    assert len(stub.tasks) == 2  # the enqueued controller and its clone: no step task was made
    errors = [line for line in (stub.workdir / "agent-services.log").read_text().splitlines()
              if "invalid pipeline parameters" in line]
    assert len(errors) == 1 and "| ERROR " in errors[0], errors
    assert errors[0].split(" - ", 1)[1] == (
        "invalid pipeline parameters: training.lr: Input should be a valid number, unable to parse string as "
        "a number (got 'abc')")
    assert stub.unknown_calls == []
