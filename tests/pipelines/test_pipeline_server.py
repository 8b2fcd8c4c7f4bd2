"""The server path of our pipeline, against the ClearML stand-in of tests/clearml_stub.

``python -m src.main train --queue gpu`` enqueues the controller; real ``clearml-agent daemon``
processes pull our steps from their queues and run them. The stand-in is a test double of the
server, not a server: these tests prove that our code drives the SDK and the agent correctly.

The agents run tasks in this interpreter, from this checkout, installing nothing
(``ClearMLStub.agent_env``). The controller is a task whose code is this repository, so the
services agent gets ``CLEARML_AGENT_FORCE_CODE_DIR`` (``from_checkout=True``) in place of a git
clone; function steps are standalone scripts (``script.diff``) that import ``src`` from the
agent's ``PYTHONPATH``, which the stand-in sets to this checkout. ``STEPWISE_STEP_REPO=none`` keeps
the steps free of a git remote (a CI clone has one), which agents here could not clone.

Every SDK or agent process is killed with its process group at its timeout.
"""

import json
import pickle
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelines.pipeline import CONTROLLER_PACKAGES, REQUIREMENTS, STEPS
from src.config import config_to_dict
from src.config.queues import load_queue_config
from src.experiment import load_config
from src.orchestration import STEP_REPO_ENV, step_checkout
from src.steps.parameters import parameters_digest, pipeline_parameters
from tests.clearml_stub import fixture as stub_fixtures
from tests.clearml_stub.stub import ClearMLStub, kill_process_group, run_src_main

clearml_stub = stub_fixtures.clearml_stub  # the stand-in's fixture, by assignment

REPO = Path(__file__).resolve().parents[2]
STEP_NAMES = tuple(spec.name for spec in STEPS)
PROJECT = "stepwise-transformers"  # config/tiny.yaml keeps the default tracking names
TASK = "transformer-de-en"
# A shorter run than config/tiny.yaml's 30 steps: one validation, one checkpoint, one heatmap.
FAST = ["training.max_steps=4", "training.warmup_steps=1", "training.log_every=2", "training.eval_every=4",
        "training.checkpoint_every=4", "tracking.heatmap_every=4", "tracking.grad_norm_every=2"]
# Relative: each step writes under the agent's own working folder (cleaned between tasks), as on
# another machine, so a step finds its inputs only as its parents' artifacts.
OUTPUT_DIR = "output_dir=runs"
NO_STEP_REPO = {STEP_REPO_ENV: "none"}
_DONE = ("completed", "failed", "stopped")


def run_cli(stub: ClearMLStub, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``python -m src.main ARGS`` pointed at ``stub``."""
    return run_src_main(args, stub.subprocess_env(NO_STEP_REPO), timeout)


def agent_logs(stub: ClearMLStub) -> str:
    return "\n".join(
        f"--- {p.name} ---\n{p.read_text()[-6000:]}" for p in sorted(stub.workdir.glob("agent-*.log")))


def wait_done(stub: ClearMLStub, task_id: str, timeout: float) -> dict:
    try:
        return stub.wait_for(
            lambda: next((t for t in stub.tasks if t["id"] == task_id and t["status"] in _DONE), None),
            timeout, f"task {task_id} to finish",
        )
    except AssertionError as err:
        raise AssertionError(f"{err}; unknown endpoints: {stub.unknown_calls}\n{agent_logs(stub)}") from None


@pytest.fixture
def start_agent() -> Iterator[Callable[..., Path]]:
    """Start ``clearml-agent daemon`` processes; each is SIGKILLed with its process group at the end."""
    agents = []

    def start(stub: ClearMLStub, name: str, queues: list[str], from_checkout: bool) -> Path:
        log = stub.workdir / f"agent-{name}.log"
        agents.append(stub.start_agent(name, queues, log, from_checkout))
        return log

    yield start
    for proc in agents:
        kill_process_group(proc)


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClearMLStub]:
    """One stand-in for this module's default tests, with the queues of queues/queues.yaml."""
    with ClearMLStub(tmp_path_factory.mktemp("clearml_stub")) as server:
        for name in load_queue_config(REPO / "queues" / "queues.yaml").queue_names:
            server.add_queue(name)
        yield server


@pytest.fixture(scope="module")
def enqueued(stub: ClearMLStub) -> SimpleNamespace:
    """``train --queue gpu`` on config/tiny.yaml; what the stand-in held right after it."""
    start = time.perf_counter()
    proc = run_cli(stub, ["train", "--queue", "gpu", "--config", "config/tiny.yaml", OUTPUT_DIR, *FAST],
                   timeout=90)
    seconds = time.perf_counter() - start
    controllers = [t for t in stub.tasks if t["type"] == "controller"]
    return SimpleNamespace(
        proc=proc, seconds=seconds, controller=controllers[0] if len(controllers) == 1 else None,
        tasks=stub.tasks, entries={q["name"]: stub.queue_entries(q["name"]) for q in stub.queues},
        queue_ids={q["name"]: q["id"] for q in stub.queues},
    )


# --- 1. the CLI puts the controller on `services`, with our config and our DAG -------------------
@pytest.mark.timeout(120)
def test_queue_cli_enqueues_the_controller_on_services_with_our_config(stub, enqueued):
    proc, controller = enqueued.proc, enqueued.controller
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert controller is not None, [t["name"] for t in enqueued.tasks]
    assert stub.unknown_calls == []
    # The web UI link is printed before the process hands over to the agent.
    assert f"follow it at {stub.web_url}/projects/" in proc.stdout
    assert f"/experiments/{controller['id']}/output/log" in proc.stdout

    assert controller["status"] == "queued"
    assert enqueued.entries == {"services": [controller["id"]], "cpu": [], "gpu": []}
    assert len(enqueued.tasks) == 1  # steps exist only as the controller's plan until it runs
    # One pipeline parameter per config key, typed as its default, as the "New Run" dialog lists them.
    args = controller["hyperparams"]["Args"]
    assert set(args) == set(pipeline_parameters(load_config("config/tiny.yaml")))
    assert {name: args[name]["value"] for name in ("run_name", "model/d_model", "training/max_steps",
                                                    "training/lr", "training/betas", "run_id")} == {
        "run_name": "tiny", "model/d_model": "32", "training/max_steps": "4", "training/lr": "0.003",
        "training/betas": "[0.9, 0.98]", "run_id": ""}  # None is stored as ""
    assert {name: args[name]["type"] for name in ("model/d_model", "training/lr", "training/compile",
                                                   "data/source")} == {
        "model/d_model": "int", "training/lr": "float", "training/compile": "bool", "data/source": "str"}
    assert "used by tokenize, train, evaluate, register" in args["tokenizer/vocab_size"]["description"]

    # The services agent re-runs our CLI from the repository root, not clearml's controller.py.
    script = controller["script"]
    assert script["entry_point"].split() == ["-m", "src.main", "train", "--queue", "gpu", "--config",
                                             "config/tiny.yaml", OUTPUT_DIR, *FAST]
    assert script["working_dir"] == "."
    packages = {line.split("==")[0] for line in script["requirements"]["pip"].splitlines() if "==" in line}
    assert set(CONTROLLER_PACKAGES) <= packages and "torch" not in packages
    # Filed where PipelineController files its own, so the web UI lists it under Pipelines.
    projects = {p["id"]: p for p in stub.projects}
    assert projects[controller["project"]]["name"] == f"{PROJECT}/.pipelines/{TASK}-pipeline"
    assert "pipeline" in controller["system_tags"]
    hidden = next(p for p in projects.values() if p["name"] == f"{PROJECT}/.pipelines")
    assert "hidden" in hidden["system_tags"]


@pytest.mark.timeout(120)
def test_the_stored_dag_puts_each_step_on_its_queue_and_container(enqueued):
    controller = enqueued.controller
    assert controller is not None, enqueued.proc.stderr[-5000:]
    queues = load_queue_config(REPO / "queues" / "queues.yaml")
    tiny = config_to_dict(load_config("config/tiny.yaml"))
    dag = json.loads(controller["configuration"]["Pipeline"]["value"])
    assert set(dag) == set(STEP_NAMES)
    expected_queue = {"data_prep": "cpu", "tokenize": "cpu", "train": "gpu", "evaluate": "gpu",
                      "register": "cpu"}
    for spec in STEPS:
        node = dag[spec.name]
        target = queues.queue(expected_queue[spec.name])
        assert node["queue"] == expected_queue[spec.name], spec.name
        assert node["parents"] == list(spec.parents), spec.name
        assert node["cache_executed_step"] is (spec.name in ("data_prep", "tokenize")), spec.name
        # each step's arguments: its own parameters only, and their digest
        config = json.loads(node["parameters"]["kwargs/config"])
        assert set(config) == ({name.split(".")[0] for name in spec.shaped_by} or set(tiny)), spec.name
        assert node["parameters"]["kwargs/config_digest"] == parameters_digest(config), spec.name
        assert node["parameters"]["kwargs/step"] == spec.name, spec.name
        # "${tokenize.output}" -> the parent's artifact "output"
        for argument, reference in spec.inputs.items():
            parent = reference.strip("${}").split(".")[0]
            assert node["parameters"][f"kwargs_artifacts/{argument}"] == f"${{{parent}.id}}.output", spec.name

        # the step task the controller creates
        task = json.loads(controller["configuration"][spec.name]["value"])
        assert task["container"] == {"image": target.docker_image, "arguments": " ".join(target.docker_args),
                                     "setup_shell_script": target.docker_setup_script or ""}, spec.name
        assert (task["name"], task["type"]) == (f"{TASK}-{spec.name}", spec.task_type)
        script = task["script"]
        # one entry for every step: its name is a parameter
        assert script["entry_point"] == "run_pipeline_step.py"
        assert "from src.steps.runner import run_step" in script["diff"]
        # no torch.save hooks: models registered once
        assert "auto_connect_frameworks=False" in script["diff"]
        torch_pin = next(line for line in REQUIREMENTS.read_text().splitlines() if line.startswith("torch=="))
        assert torch_pin in script["requirements"]["pip"]  # requirements.txt, not the script's imports


@pytest.mark.timeout(60)
def test_an_unknown_queue_is_refused_before_anything_is_created(clearml_stub):
    proc = run_cli(clearml_stub, ["train", "--queue", "nope", "--config", "config/tiny.yaml"], timeout=50)
    assert proc.returncode == 2
    assert "unknown queue 'nope', expected one of ['cpu', 'gpu', 'services']" in proc.stderr
    assert clearml_stub.tasks == []


# --- 2. a real agent runs our train step from the gpu queue ---------------------------------------
HANDOFF = '''
"""What the controller and the cpu agent do before the train step, done here without agents.

data_prep and tokenize run in tasks opened as the function-step wrapper opens them: Task.init, the
pipeline's step function, its return value uploaded as artifact "output". The train step's task
is then made from the definition the controller stored, as the controller makes it (Task.create,
update_task), given the parameters it would resolve, and put on the queue of the stored DAG.
"""
import json
from clearml import Task
from src.steps import run_pipeline_step

plan = json.loads(open({plan_file!r}).read())
outputs, task_ids = {{}}, {{}}
for name, inputs in (("data_prep", {{}}), ("tokenize", {{"data": "data_prep"}})):
    definition = plan["definitions"][name]
    task = Task.init(project_name=plan["project"], task_name=definition["name"], task_type=definition["type"],
                     auto_connect_frameworks=False, output_uri=True)
    outputs[name] = run_pipeline_step(name, **plan["kwargs"][name],
                                      **{{arg: outputs[p] for arg, p in inputs.items()}})
    task.upload_artifact("output", artifact_object=outputs[name], extension_name=".pkl", wait_on_upload=True)
    task_ids[name] = task.id
    task.close()

definition = plan["definitions"]["train"]
train = Task.create(project_name=plan["project"], task_name=definition["name"], task_type=definition["type"])
train.update_task(definition)
train.set_parameters({{"kwargs/config": plan["kwargs"]["train"]["config"],
                      "kwargs/config_digest": plan["kwargs"]["train"]["config_digest"],
                      "kwargs_artifacts/tokenized": task_ids["tokenize"] + ".output"}})
Task.enqueue(train, queue_name=plan["queue"])
print("IDS", json.dumps({{**task_ids, "train": train.id}}))
'''


@pytest.mark.slow  # about 22 s: a real agent runs the step
@pytest.mark.timeout(240)
def test_a_gpu_agent_runs_our_train_step_to_completed(stub, enqueued, start_agent):
    """~50 s: data prep and tokenization here, then one agent spin-up and a 4-step training."""
    controller = enqueued.controller
    assert controller is not None, enqueued.proc.stderr[-5000:]
    dag = json.loads(controller["configuration"]["Pipeline"]["value"])
    plan = {
        "project": PROJECT, "queue": dag["train"]["queue"],
        "kwargs": {name: {key.removeprefix("kwargs/"): value for key, value in dag[name]["parameters"].items()
                          if key.startswith("kwargs/") and key != "kwargs/step"} for name in STEP_NAMES},
        "definitions": {name: json.loads(controller["configuration"][name]["value"]) for name in STEP_NAMES},
    }
    plan_file = stub.workdir / "plan.json"
    plan_file.write_text(json.dumps(plan))
    result = stub.run_python(HANDOFF.format(plan_file=str(plan_file)), timeout=150)
    assert result.returncode == 0, result.output
    ids = json.loads(next(line[4:] for line in result.stdout.splitlines() if line.startswith("IDS ")))
    assert stub.queue_entries("gpu") == [ids["train"]]

    log = start_agent(stub, "gpu", ["gpu"], from_checkout=False)
    train = wait_done(stub, ids["train"], timeout=180)

    assert train["status"] == "completed", agent_logs(stub)
    assert stub.status_history(train["id"])[:3] == ["created", "queued", "in_progress"]
    assert train["execution"]["queue"] == enqueued.queue_ids["gpu"]
    assert train["container"]["image"] == load_queue_config(
        REPO / "queues" / "queues.yaml").queue("gpu").docker_image
    # The JSON string parameter reached our step, which validated it and shows it as the task's config.
    params = stub.hyperparams(train["id"])
    assert (params["config/run_name"], params["config/model/d_model"],
            params["config/training/max_steps"]) == (
        "tiny", "32", "4")
    series = {(title, name) for title, name, _, _ in stub.scalars(train["id"])}
    assert {("train", "loss"), ("valid", "loss"), ("learning_rate", "lr")} <= series, sorted(series)
    # On "another machine": the tokenize folder is not there, its artifact is downloaded instead.
    assert f"not found here; using artifact 'tokenized' of task {ids['tokenize']}" in log.read_text()

    # The function-step wrapper could still upload our return value after our tracker was done.
    output = pickle.loads(stub.file_for_url(stub.artifacts(train["id"])["output"]["uri"]))
    (model,) = [m for m in stub.models if m["task"] == train["id"]]
    assert (output["task_id"], output["model_id"], output["steps"]) == (train["id"], model["id"], 4)
    # Weights uploaded to the files host (the step set the task's output_uri), not file:// on the agent.
    assert model["uri"].startswith(stub.files_url)
    weights = stub.file_for_url(model["uri"])
    assert weights and weights == stub.file_for_url(stub.artifacts(train["id"])[f"{TASK}-weights"]["uri"])
    assert {"valid_loss", "steps"} <= set(model["metadata"])
    assert stub.unknown_calls == []


# --- resolve_input: the artifact fallback, alone --------------------------------------------------
RESOLVE = """
import shutil
from pathlib import Path
from clearml import Task
from src.tracking import resolve_input

step_dir = Path("upstream/data_prep")
(step_dir / "dataset" / "train").mkdir(parents=True)
(step_dir / "dataset" / "train" / "rows.arrow").write_bytes(b"rows")
(step_dir / "card.json").write_text('{"pairs": 3}')
task = Task.init(project_name="inputs", task_name="upstream", auto_connect_frameworks=False, output_uri=True)
task.upload_artifact("dataset", artifact_object=(step_dir / "dataset").as_posix(), wait_on_upload=True)
task.upload_artifact("data_card", artifact_object=(step_dir / "card.json").as_posix(), wait_on_upload=True)
task.close()
result = {"data_dir": str(step_dir), "card": str(step_dir / "card.json"), "task_id": task.id}
print("LOCAL", resolve_input(result, "data_dir", artifact="dataset", subdir="dataset") == step_dir)

shutil.rmtree("upstream")  # another machine: the upstream step's paths do not exist here
folder = resolve_input(result, "data_dir", artifact="dataset", subdir="dataset")
print("DATASET", (folder / "dataset" / "train" / "rows.arrow").read_bytes())
print("CARD", resolve_input(result, "card", artifact="data_card").read_text())
try:
    resolve_input(result, "data_dir", artifact="tokenized")
except FileNotFoundError as err:
    print("MISSING", err)
"""


@pytest.mark.timeout(120)
def test_resolve_input_downloads_the_upstream_artifact_when_the_path_is_missing(clearml_stub):
    result = clearml_stub.run_python(RESOLVE, timeout=100)
    assert result.returncode == 0, result.output
    assert "LOCAL True" in result.stdout
    assert "DATASET b'rows'" in result.stdout  # a folder artifact comes back extracted, under its own name
    assert 'CARD {"pairs": 3}' in result.stdout
    assert "has no artifact 'tokenized' (it has ['data_card', 'dataset'])" in result.stdout
    assert clearml_stub.unknown_calls == []


# --- the repository the steps carry ---------------------------------------------------------------
def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


@pytest.mark.timeout(60)
def test_steps_carry_the_remote_and_commit_of_the_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv(STEP_REPO_ENV, raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "init")
    assert step_checkout(repo) == {}  # no remote: nothing an agent could clone
    _git(repo, "remote", "add", "origin", "https://example.invalid/team/stepwise.git")
    assert step_checkout(repo) == {"repo": "https://example.invalid/team/stepwise.git", "repo_branch": "main",
                                   "repo_commit": _git(repo, "rev-parse", "HEAD")}
    monkeypatch.setenv(STEP_REPO_ENV, "none")
    assert step_checkout(repo) == {}


# --- the whole pipeline on agents -----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_whole_pipeline_runs_on_agents(clearml_stub, start_agent):
    """~3 min on a loaded 2-core machine: the controller on a services agent, five steps on a cpu+gpu
    agent."""
    queue_ids = {name: clearml_stub.add_queue(name) for name in ("services", "cpu", "gpu")}
    proc = run_cli(clearml_stub,
                   ["train", "--queue", "gpu", "--config", "config/tiny.yaml", OUTPUT_DIR, *FAST],
                   timeout=90)
    assert proc.returncode == 0, proc.stderr[-5000:]
    (controller,) = clearml_stub.tasks

    start_agent(clearml_stub, "services", ["services"], from_checkout=True)  # stands in for the git clone
    worker_log = start_agent(clearml_stub, "worker", ["cpu", "gpu"], from_checkout=False)
    controller = wait_done(clearml_stub, controller["id"], timeout=540)

    steps = {name: clearml_stub.task_by_name(f"{TASK}-{name}") for name in STEP_NAMES}
    statuses = {name: task["status"] for name, task in [("controller", controller), *steps.items()]}
    assert set(statuses.values()) == {"completed"}, f"{statuses}\n{agent_logs(clearml_stub)}"
    assert controller["execution"]["queue"] == queue_ids["services"]
    expected_queue = {"data_prep": "cpu", "tokenize": "cpu", "train": "gpu", "evaluate": "gpu",
                      "register": "cpu"}
    assert {
        name: clearml_stub.queue_name(t["execution"]["queue"]) for name, t in steps.items()} == expected_queue
    assert {t["parent"] for t in steps.values()} == {controller["id"]}

    series = {(title, name) for title, name, _, _ in clearml_stub.scalars(steps["train"]["id"])}
    assert {("train", "loss"), ("valid", "loss")} <= series, sorted(series)
    assert "metrics" in clearml_stub.artifacts(steps["evaluate"]["id"])
    # one model per checkpoint: train registered it, register tagged it by id (no second upload)
    (registered,) = clearml_stub.models
    assert registered["task"] == steps["train"]["id"] and registered["uri"].startswith(clearml_stub.files_url)
    assert "best-valid" in registered["tags"] and {"production", "candidate"} & set(registered["tags"])
    assert {"bleu", "stage", "valid_loss"} <= set(registered["metadata"])
    # Each step ran in a fresh folder on the agent: the corpus came as the ClearML Dataset version data_prep
    # published (every step records its id), the other inputs as their parents' artifacts.
    log = worker_log.read_text()
    (version,) = [t for t in clearml_stub.tasks if "dataset" in t["system_tags"]]
    # (the data steps' folders are named by the defaults: run_name is not among their parameters)
    assert f"data_dir=runs/default/data_prep not found here; using ClearML dataset {version['id']}" in log
    recorded = {clearml_stub.hyperparams(t["id"])["properties/dataset_id"] for t in steps.values()}
    assert recorded == {version["id"]}
    for key, artifact, parent, run in (("tokenized_dir", "tokenized", "tokenize", "default"),
                                       ("checkpoint", f"{TASK}-weights", "train", "tiny")):
        assert (f"{key}=runs/{run}/" in log
                and f"using artifact '{artifact}' of task {steps[parent]['id']}" in log)
    assert clearml_stub.unknown_calls == []
