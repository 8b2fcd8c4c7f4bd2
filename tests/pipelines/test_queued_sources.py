"""``train --queue`` with ``model.init_from`` or ``training.distill_from`` naming a registry model: the queued
config keeps ``NAME:TAG`` (or the model id), and the steps that read it (tokenize, train) fetch it where they
run, as a clone of the step in the web UI does; a path the agent lacks fails there, before training, in one
line (issue 29).

Against the stand-in (tests/clearml_stub): the enqueuing CLI asks the server for no model (none is
registered when it runs). The steps then run from the DAG it stored, as an agent runs them, in another
folder and HOME, after the first of the session's tiny runs was registered as ``tiny-src:production``.
"""

import json
import pickle
import re
from types import SimpleNamespace

import pytest

from src.experiment import load_config
from src.models.hf_config import InitSourceError
from src.orchestration import resolve_in_step, resolve_sources, source_here
from tests.clearml_stub.stub import ClearMLStub
from tests.pipelines.test_pipeline_server import FAST, NO_STEP_REPO, OUTPUT_DIR, run_cli

pytestmark = pytest.mark.timeout(400)
REFERENCE = "tiny-src:production"
MODEL_ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("key, source", [("model.init_from", REFERENCE), ("model.init_from", MODEL_ID),
                                         ("training.distill_from", REFERENCE)])
def test_a_queued_config_keeps_the_registry_reference(key, source):
    """No server is configured in this process: a fetch would fail; ``fetch=False`` asks nothing."""
    cfg = load_config("config/imdb_tiny.yaml", [f"{key}={source}"])
    queued = resolve_sources(cfg, fetch=False)
    assert (queued.model.init_from, queued.training.distill_from) == (
        (source, None) if key == "model.init_from" else (None, source))
    with pytest.raises(InitSourceError, match="a registered model needs a ClearML server"):
        resolve_sources(cfg)  # offline and locally: fetched at train's start, as before


@pytest.mark.parametrize("key", ["model.init_from", "training.distill_from"])
def test_a_path_the_agent_lacks_fails_in_one_line_before_training(tmp_path, key):
    missing = tmp_path / "runs" / "imdb-mlm-0001" / "train" / "checkpoints" / "best.pt"
    cfg = load_config("config/imdb_tiny.yaml", [f"{key}={missing}"])
    for resolve in (lambda: resolve_in_step(cfg), lambda: source_here(key, str(missing), cfg.output_dir)):
        with pytest.raises(InitSourceError) as info:
            resolve()
        message = str(info.value)
        assert message.startswith(f"{key}={missing}: no such file or folder on this machine")
        assert "register the model" in message and "NAME:TAG or its model id" in message
        assert "\n" not in message


AGENT = '''
"""The tokenize and train steps of the stored DAG, run as an agent runs them (Task.init as the function-step
wrapper does, then the step), in this folder: the registry model is registered first, after the enqueue."""
import json
from clearml import OutputModel, Task
from src.steps import run_pipeline_step

plan = json.loads(open({plan_file!r}).read())
pretrain = Task.init(project_name="pretraining", task_name="tiny-src", auto_connect_frameworks=False,
                     output_uri=True)
model = OutputModel(task=pretrain, name="tiny-src", tags=["production"])
model.update_weights(weights_filename=plan["weights"], auto_delete_file=False)
pretrain.close()

outputs, ids = {{"data_prep": plan["data_prep"]}}, {{"model": model.id}}
for name, argument, parent in (("tokenize", "data", "data_prep"), ("train", "tokenized", "tokenize")):
    task = Task.init(project_name="stepwise-transformers", task_name=name, auto_connect_frameworks=False,
                     output_uri=True)
    outputs[name] = run_pipeline_step(name, **plan["kwargs"][name], **{{argument: outputs[parent]}})
    task.upload_artifact("output", artifact_object=outputs[name], extension_name=".pkl", wait_on_upload=True)
    ids[name] = task.id
    task.close()
print("IDS", json.dumps(ids))
'''


@pytest.fixture(scope="module")
def queued(tiny_runs, tmp_path_factory):
    source = tiny_runs.run_dirs[0]
    with ClearMLStub(tmp_path_factory.mktemp("queued_sources")) as stub:
        for name in ("services", "cpu", "gpu"):
            stub.add_queue(name)
        proc = run_cli(stub, ["train", "--queue", "gpu", "--config", "config/tiny.yaml", OUTPUT_DIR, *FAST,
                              f"model.init_from={REFERENCE}"], timeout=120)
        assert proc.returncode == 0, proc.stderr[-5000:]
        (controller,) = [t for t in stub.tasks if t["type"] == "controller"]
        dag = json.loads(controller["configuration"]["Pipeline"]["value"])
        plan = {"weights": str(source / "train" / "checkpoints" / "best.pt"),
                "data_prep": json.loads((source / "status.json").read_text())["steps"]["data_prep"]["output"],
                "kwargs": {name: {key.removeprefix("kwargs/"): value
                                  for key, value in dag[name]["parameters"].items()
                                  if key.startswith("kwargs/") and key != "kwargs/step"}
                           for name in ("tokenize", "train")}}
        plan_file = stub.workdir / "plan.json"
        plan_file.write_text(json.dumps(plan))
        result = stub.run_python(AGENT.format(plan_file=str(plan_file)), timeout=300, extra_env=NO_STEP_REPO)
        assert result.returncode == 0, result.output[-6000:]
        ids = json.loads(next(line[4:] for line in result.stdout.splitlines() if line.startswith("IDS ")))
        yield SimpleNamespace(stub=stub, proc=proc, dag=dag, ids=ids, log=result.stderr, source=source)


def test_the_queued_dag_names_the_registry_model_not_a_local_path(queued):
    assert "fetched" not in queued.proc.stderr  # the enqueuing machine downloaded nothing
    for step in ("tokenize", "train"):
        config = json.loads(queued.dag[step]["parameters"]["kwargs/config"])
        assert config["model"]["init_from"] == REFERENCE, step
    # NAME:TAG may name another model by the time tokenize runs again: its tokenizer is not taken from cache
    assert queued.dag["tokenize"]["cache_executed_step"] is False
    assert queued.dag["data_prep"]["cache_executed_step"] is True


def test_the_steps_fetch_the_model_where_they_run_and_link_it(queued):
    stub, ids = queued.stub, queued.ids
    assert f"fetched tiny-src ({ids['model']}" in queued.log
    train = next(t for t in stub.tasks if t["id"] == ids["train"])
    # the task's config holds the reference, which a clone of it resolves again on its agent
    assert stub.hyperparams(ids["train"])["config/model/init_from"] == REFERENCE
    assert stub.hyperparams(ids["tokenize"])["config/model/init_from"] == REFERENCE
    assert train["models"]["input"] == [{"name": "init_from", "model": ids["model"]}]
    # the source's weights loaded: every tensor of the same tiny model
    rows = dict(re.findall(r"^  (loaded|newly initialised|ignored)\s+(\d+)", queued.log, re.MULTILINE))
    assert int(rows["loaded"]) > 0 and rows["newly initialised"] == "0", queued.log[-3000:]
    output = pickle.loads(stub.file_for_url(stub.artifacts(ids["train"])["output"]["uri"]))
    assert output["steps"] == 4
    assert stub.unknown_calls == []
