"""A real ``clearml-agent daemon`` against the in-memory stand-in server.

The agent installs nothing and clones nothing here (see ``ClearMLStub.agent_env``): it runs the
queued task in this interpreter, from this checkout, so these tests prove the queue -> agent ->
task-code -> server round trip, not environment building or git access.
"""

import json
from collections.abc import Callable, Iterator

import pytest

from tests.clearml_stub import fixture as stub_fixtures
from tests.clearml_stub.stub import ClearMLStub, kill_process_group

# The stand-in's fixtures, by assignment (an import would read as unused to linters).
clearml_stub = stub_fixtures.clearml_stub

_DONE = ("completed", "failed", "stopped")


@pytest.fixture
def start_agent(clearml_stub: ClearMLStub) -> Iterator[Callable]:
    """Start agents for the test; every one is SIGKILLed with its process group at the end."""
    agents = []

    def start(name: str, queues: list[str], from_checkout: bool):
        log = clearml_stub.workdir / f"agent-{name}.log"
        agents.append((clearml_stub.start_agent(name, queues, log, from_checkout), log))
        return log

    yield start
    for proc, _ in agents:
        kill_process_group(proc)


def _logs(stub: ClearMLStub) -> str:
    return "\n".join(
        f"--- {p.name} ---\n{p.read_text()[-4000:]}" for p in sorted(stub.workdir.glob("agent-*.log"))
    )


def _wait_done(stub: ClearMLStub, task_id: str, timeout: float) -> dict:
    try:
        return stub.wait_for(
            lambda: next((t for t in stub.tasks if t["id"] == task_id and t["status"] in _DONE), None),
            timeout,
            f"task {task_id} to finish",
        )
    except AssertionError as err:
        raise AssertionError(f"{err}; unknown endpoints: {stub.unknown_calls}\n{_logs(stub)}") from None


@pytest.mark.timeout(120)
def test_agent_runs_a_queued_task_from_the_checkout_to_completed(clearml_stub, start_agent):
    clearml_stub.add_queue("gpu")
    # The entry point is a file of this repository, as after the agent's git clone.
    result = clearml_stub.run_python(
        """
from clearml import Task
task = Task.create(project_name="contract", task_name="agent-run", task_type="training")
task.set_script(repository="", branch="", commit="", diff="", working_dir=".",
                entry_point="tests/clearml_stub/agent_entry.py")
task.set_parameters({"Args/run_name": "from-queue"})
Task.enqueue(task, queue_name="gpu")
""",
        timeout=60,
    )
    assert result.returncode == 0, result.output
    task_id = clearml_stub.queue_entries("gpu")[0]

    start_agent("gpu", ["gpu"], from_checkout=True)
    task = _wait_done(clearml_stub, task_id, timeout=90)

    assert task["status"] == "completed", _logs(clearml_stub)
    assert clearml_stub.status_history(task_id)[:3] == ["created", "queued", "in_progress"]
    assert clearml_stub.queue_entries("gpu") == []
    # The task's code imported src.config, saw the queued parameter, and reported back.
    assert clearml_stub.scalars(task_id) == [("config", "d_model", 0, 256.0)]
    config = json.loads(clearml_stub.file_for_url(clearml_stub.artifacts(task_id)["resolved_config"]["uri"]))
    assert config["run_name"] == "from-queue"
    assert config["model"]["d_model"] == 256
    assert clearml_stub.unknown_calls == []


_PIPELINE = """
from clearml import PipelineController

def prep(n: int = 3):
    from src.experiment import ExperimentConfig  # the project's code, imported inside the step
    assert ExperimentConfig().model.d_model == 256
    return list(range(int(n)))  # pipeline parameters arrive as strings (clearml issue #1668)

def train(data, lr: float = 0.1):
    return sum(data) * float(lr)

pipe = PipelineController(name="pipe", project="contract", version="1.0.0", add_pipeline_tags=False,
                          pool_frequency=0.05)
pipe.add_parameter("n", 4)
pipe.add_parameter("lr", 0.01)
pipe.add_function_step(name="prep", function=prep, function_kwargs={"n": "${pipeline.n}"},
                       function_return=["data"], execution_queue="cpu", cache_executed_step=True)
pipe.add_function_step(name="train", function=train,
                       function_kwargs={"data": "${prep.data}", "lr": "${pipeline.lr}"},
                       function_return=["score"], execution_queue="gpu",
                       docker="pytorch/pytorch:latest", docker_args="--ipc=host")
pipe.start(queue="services")
"""


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_pipeline_runs_controller_and_steps_on_their_queues(clearml_stub, start_agent):
    """~30 s idle, longer on a loaded machine: two agents, each polling every 5 s."""
    queues = {name: clearml_stub.add_queue(name) for name in ("services", "cpu", "gpu")}
    result = clearml_stub.run_python(_PIPELINE, timeout=60)
    assert result.returncode == 0, result.output
    controller = clearml_stub.task_by_name("pipe")

    # Function steps are standalone scripts in script.diff, so no checkout override for these agents.
    start_agent("services", ["services"], from_checkout=False)
    start_agent("worker", ["cpu", "gpu"], from_checkout=False)
    controller = _wait_done(clearml_stub, controller["id"], timeout=180)

    prep, train = clearml_stub.task_by_name("prep"), clearml_stub.task_by_name("train")
    statuses = {t["name"]: t["status"] for t in (controller, prep, train)}
    assert statuses == {"pipe": "completed", "prep": "completed", "train": "completed"}, _logs(clearml_stub)
    assert [t["execution"]["queue"] for t in (controller, prep, train)] == [
        queues["services"],
        queues["cpu"],
        queues["gpu"],
    ]
    assert prep["parent"] == train["parent"] == controller["id"]
    assert clearml_stub.hyperparams(prep["id"]) == {"kwargs/n": "4"}
    train_params = clearml_stub.hyperparams(train["id"])
    assert train_params["kwargs/lr"] == "0.01"
    assert train_params["kwargs_artifacts/data"] == f"{prep['id']}.data"
    assert float(train_params["return/score"]) == pytest.approx(0.06)  # sum(range(4)) * 0.01
    assert (train["container"]["image"], train["container"]["arguments"]) == (
        "pytorch/pytorch:latest",
        "--ipc=host",
    )
    assert clearml_stub.unknown_calls == []
