"""The two-pipeline chain's lineage: a train task started with ``model.init_from`` records its input model, so
the model's page in the ClearML web UI lists the tasks that started from it (issue 29).

Against the stand-in (tests/clearml_stub): the first of the session's tiny runs plays the pretraining run and
is imported (a copy: the session's runs are never changed). Then

- offline: a run started from its folder records the source model by its offline id; ``import-offline``
  links the imported train task to the model the pretraining session became on the server;
- by ``NAME:TAG``: a run started from the registry's model is linked to it by its server id.
"""

import json
import re
import shutil
from types import SimpleNamespace

import pytest

from tests.clearml_stub.stub import ClearMLStub, run_src_main
from tests.pipelines.conftest import clean_env, run_folder
from tests.pipelines.test_pipeline_server import FAST, TASK

pytestmark = pytest.mark.timeout(600)
STEPS = ("data_prep", "tokenize", "train", "evaluate", "register")


def imported_ids(stderr: str) -> dict[str, str]:
    """The tasks ``import-offline`` made from a run, by step (it imports the sessions in pipeline order)."""
    match = re.search(r"imported 5 session\(s\): (\S+(?:, \S+){4})", stderr)
    assert match, stderr[-3000:]
    return dict(zip(STEPS, match.group(1).split(", ")))


def train(root, stub_env: dict, name: str, *overrides: str) -> tuple:
    proc = run_src_main(["train", "--config", "config/tiny.yaml", *overrides, *FAST,
                         f"output_dir={root / name}"], stub_env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc, run_folder(proc.stdout)


@pytest.fixture(scope="module")
def chain(tiny_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("lineage")
    pretrained = shutil.copytree(tiny_runs.run_dirs[0], root / "pretrain" / tiny_runs.run_dirs[0].name,
                                 symlinks=True)
    offline = clean_env(root / "home")
    # offline, before any server exists: the fine-tuning run starts from the pretraining run's folder
    _, finetuned = train(root, offline, "offline-runs", f"model.init_from={pretrained}")
    with ClearMLStub(root / "stub") as stub:
        env = stub.subprocess_env()
        source = run_src_main(["import-offline", str(pretrained)], env, timeout=180)
        assert source.returncode == 0, source.stderr[-5000:]
        # from the registry by name and tag (while the source's is the only model of that name), offline
        # tracking: the server is asked only for the weights
        _, by_tag = train(root, env, "tag-runs", "--offline", f"model.init_from={TASK}:best-valid")
        target = run_src_main(["import-offline", str(finetuned)], env, timeout=180)
        assert target.returncode == 0, target.stderr[-5000:]
        tagged = run_src_main(["import-offline", str(by_tag)], env, timeout=180)
        assert tagged.returncode == 0, tagged.stderr[-5000:]
        ids = {"source": imported_ids(source.stderr), "offline": imported_ids(target.stderr),
               "tag": imported_ids(tagged.stderr)}
        yield SimpleNamespace(stub=stub, pretrained=pretrained, finetuned=finetuned, by_tag=by_tag, ids=ids)


def task(stub: ClearMLStub, task_id: str) -> dict:
    return next(t for t in stub.tasks if t["id"] == task_id)


def source_model(chain) -> dict:
    (model,) = [m for m in chain.stub.models if m["task"] == chain.ids["source"]["train"]]
    return model


def test_offline_the_fine_tuning_session_names_the_pretraining_model(chain):
    from tests.clearml_session import read_offline_session

    (zip_path,) = (chain.finetuned / "train" / "clearml_offline").glob("*.zip")
    session = read_offline_session(zip_path)
    recorded = json.loads(session.read_bytes(session.artifacts["input-model"]))
    source_train = json.loads((chain.pretrained / "status.json").read_text())["steps"]["train"]["output"]
    assert recorded["model_id"] == source_train["model_id"] and recorded["model_id"].startswith("offline-")
    assert recorded["session"] == str(chain.pretrained / "train" / "clearml_offline" /
                                      f"{source_train['task_id']}.zip")


def test_import_offline_links_the_fine_tuning_task_to_the_imported_model(chain):
    model = source_model(chain)
    assert "best-valid" in model["tags"]
    train_task = task(chain.stub, chain.ids["offline"]["train"])
    assert train_task["models"]["input"] == [{"name": "init_from", "model": model["id"]}]
    for step in ("data_prep", "tokenize", "evaluate", "register"):  # only the task that loaded the weights
        assert not task(chain.stub, chain.ids["offline"][step])["models"].get("input"), step
    assert chain.stub.unknown_calls == []


def test_a_run_started_from_the_registry_by_name_and_tag_is_linked_to_that_model(chain):
    model = source_model(chain)
    train_task = task(chain.stub, chain.ids["tag"]["train"])
    assert train_task["models"]["input"] == [{"name": "init_from", "model": model["id"]}]
    config = json.loads((chain.by_tag / "config.json").read_text())
    assert config["model"]["init_from"].endswith(".pt")  # the downloaded weights the run started from
