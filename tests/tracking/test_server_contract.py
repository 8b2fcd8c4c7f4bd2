"""Contract tests: the real ClearML SDK, online, against the in-memory stand-in server.

Each scenario runs in a fresh interpreter (``clearml_stub.run_python``, killed after its timeout)
and the assertions read what reached the stub: they prove the SDK is driven correctly, not that a
real server behaves like the stub.
"""

import json

import pytest

from tests.clearml_stub import fixture as stub_fixtures
from tests.clearml_stub.stub import ClearMLStub

# The stand-in's fixtures, by assignment (an import would read as unused to linters).
clearml_stub = stub_fixtures.clearml_stub


def _run(stub: ClearMLStub, code: str, timeout: float = 60) -> str:
    result = stub.run_python(code, timeout=timeout)
    assert result.returncode == 0, f"unknown endpoints: {stub.unknown_calls}\n{result.output}"
    assert stub.unknown_calls == [], stub.unknown_calls
    return result.stdout


@pytest.mark.timeout(90)
def test_online_task_records_hyperparameters_scalars_and_artifact(clearml_stub):
    _run(
        clearml_stub,
        """
from clearml import Task
task = Task.init(project_name="contract", task_name="online", auto_connect_frameworks=False)
task.connect({"lr": 0.001, "n_layers": 2}, name="Args")
for step, loss in enumerate([2.0, 1.0, 0.5]):
    task.get_logger().report_scalar("loss", "train", value=loss, iteration=step)
task.upload_artifact("summary", artifact_object={"bleu": 12.5}, wait_on_upload=True)
task.close()
""",
    )
    task = clearml_stub.task_by_name("online")
    assert task["status"] == "completed"
    assert clearml_stub.hyperparams(task["id"]) == {"Args/lr": "0.001", "Args/n_layers": "2"}
    assert clearml_stub.scalars(task["id"]) == [
        ("loss", "train", 0, 2.0),
        ("loss", "train", 1, 1.0),
        ("loss", "train", 2, 0.5),
    ]
    summary = clearml_stub.artifacts(task["id"])["summary"]
    assert json.loads(clearml_stub.file_for_url(summary["uri"])) == {"bleu": 12.5}


@pytest.mark.timeout(90)
def test_task_is_enqueued_on_the_named_queue_with_its_parameters_and_container(clearml_stub):
    gpu = clearml_stub.add_queue("gpu")
    stdout = _run(
        clearml_stub,
        """
from clearml import Task
task = Task.create(project_name="contract", task_name="remote-train", task_type="training")
task.set_parameters({"Args/max_steps": 20, "Args/run_name": "smoke"})
task.set_base_docker(docker_image="pytorch/pytorch:latest", docker_arguments="--ipc=host")
Task.enqueue(task, queue_name="gpu")
print("TASK", task.id)
""",
    )
    task = clearml_stub.task_by_name("remote-train")
    assert f"TASK {task['id']}" in stdout
    assert task["status"] == "queued"
    assert task["execution"]["queue"] == gpu
    assert clearml_stub.queue_entries("gpu") == [task["id"]]
    assert clearml_stub.hyperparams(task["id"]) == {"Args/max_steps": "20", "Args/run_name": "smoke"}
    assert (task["container"]["image"], task["container"]["arguments"]) == (
        "pytorch/pytorch:latest",
        "--ipc=host",
    )


# Pipeline parameters are strings on the server; the steps cast them (clearml issue #1668).
_PIPELINE = """
from clearml import PipelineController

def prep(n: int = 3):
    import src.config  # steps must import the project's code on the agent
    return list(range(int(n)))

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
print("NOT REACHED: start() leaves the process once the controller is enqueued")
"""


@pytest.mark.timeout(90)
def test_pipeline_start_enqueues_the_controller_on_services_with_the_step_plan(clearml_stub):
    services = clearml_stub.add_queue("services")
    for name in ("cpu", "gpu"):
        clearml_stub.add_queue(name)
    stdout = _run(clearml_stub, _PIPELINE)

    assert "NOT REACHED" not in stdout
    controller = clearml_stub.task_by_name("pipe")
    assert controller["status"] == "queued"
    assert controller["execution"]["queue"] == services
    assert clearml_stub.queue_entries("services") == [controller["id"]]
    assert {"Args/n": "4", "Args/lr": "0.01"}.items() <= clearml_stub.hyperparams(controller["id"]).items()
    # Steps are created by the controller once an agent runs it; until then they exist only as its plan.
    assert clearml_stub.queue_entries("cpu") == clearml_stub.queue_entries("gpu") == []
    dag = json.loads(controller["configuration"]["Pipeline"]["value"])
    assert (dag["prep"]["queue"], dag["prep"]["parameters"]) == ("cpu", {"kwargs/n": "${pipeline.n}"})
    assert dag["train"]["queue"] == "gpu"
    assert dag["train"]["parents"] == ["prep"]
    assert dag["train"]["parameters"]["kwargs/lr"] == "${pipeline.lr}"
    train_task = json.loads(controller["configuration"]["train"]["value"])
    assert train_task["container"] == {
        "image": "pytorch/pytorch:latest",
        "arguments": "--ipc=host",
        "setup_shell_script": "",
    }


@pytest.mark.timeout(90)
def test_pipeline_start_on_a_missing_queue_fails_instead_of_waiting(clearml_stub):
    # Controllers stuck "pending" with no agent on `services` are the most reported pipeline problem
    # (clearml issues #901, #1109, #1244); a missing queue at least fails loudly, before anything runs.
    result = clearml_stub.run_python(_PIPELINE, timeout=60)
    assert result.returncode != 0
    assert 'Could not find queue named "services"' in result.stderr


@pytest.mark.timeout(120)
def test_offline_session_import_uploads_parameters_scalars_artifacts_and_images(clearml_stub):
    stdout = clearml_stub.run_python(
        """
import numpy as np
from clearml import Task
Task.set_offline(True)
task = Task.init(project_name="contract", task_name="offline-run", auto_connect_frameworks=False)
task.connect({"lr": 0.5}, name="Args")
for step in range(3):
    task.get_logger().report_scalar("loss", "train", value=1.0 / (step + 1), iteration=step)
task.get_logger().report_image("attention", "layer0", iteration=2, image=np.zeros((8, 8, 3), dtype=np.uint8))
task.upload_artifact("summary", artifact_object={"bleu": 3.5}, wait_on_upload=True)
folder = task.get_offline_mode_folder()
task.close()
print("ZIP", str(folder) + ".zip")
""",
        timeout=60,
    ).stdout
    assert clearml_stub.state.calls == [], "an offline session must not talk to the server"
    zip_path = next(line[4:] for line in stdout.splitlines() if line.startswith("ZIP "))

    _run(clearml_stub, f"from clearml import Task\nTask.import_offline_session({zip_path!r})\n")

    task = clearml_stub.task_by_name("offline-run")
    assert task["status"] == "completed"
    assert clearml_stub.hyperparams(task["id"]) == {"Args/lr": "0.5"}
    assert [(m, v, i) for m, v, i, _ in clearml_stub.scalars(task["id"])] == [
        ("loss", "train", i) for i in range(3)
    ]
    summary = clearml_stub.artifacts(task["id"])["summary"]
    assert json.loads(clearml_stub.file_for_url(summary["uri"])) == {"bleu": 3.5}
    images = [e for e in clearml_stub.events if e["type"] == "training_debug_image"]
    assert [(e["metric"], e["variant"], e["iter"]) for e in images] == [("attention", "layer0", 2)]
    assert clearml_stub.file_for_url(images[0]["url"]).startswith(b"\xff\xd8")  # a JPEG on the files host
