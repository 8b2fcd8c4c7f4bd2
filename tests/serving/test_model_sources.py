"""What ``serve`` accepts as its model: checkpoints, run folders, ids, 'latest', NAME:TAG, ClearML model
ids."""

import json
import shutil
from pathlib import Path

import pytest

from src.serving.sources import resolve_source
from src.orchestration import RegisteredModel


@pytest.fixture
def run_dir(checkpoints, tmp_path) -> Path:
    """A run folder as train leaves it: status, the best checkpoint, the evaluate step's metrics."""
    run = tmp_path / "runs" / "tiny-20261202-120000"
    (run / "train" / "checkpoints").mkdir(parents=True)
    (run / "evaluate").mkdir()
    (run / "status.json").write_text(json.dumps({"run_name": "tiny", "status": "completed", "created": 1.0}))
    shutil.copy(checkpoints["translate"], run / "train" / "checkpoints" / "best.pt")
    (run / "evaluate" / "metrics.json").write_text(json.dumps({"bleu_beam": 3.2}))
    return run


def test_a_checkpoint_file_is_served_as_it_is(checkpoints):
    source = resolve_source(str(checkpoints["translate"]))
    assert source.checkpoint == checkpoints["translate"] and source.info == {
        "source": "local", "checkpoint": str(checkpoints["translate"])}


@pytest.mark.parametrize("ref", ["folder", "tiny-20261202-120000", "tiny", "latest"])
def test_a_run_by_folder_id_name_or_latest_brings_its_metrics(run_dir, ref):
    source = resolve_source(str(run_dir) if ref == "folder" else ref, run_dir.parent)
    assert source.checkpoint == run_dir / "train" / "checkpoints" / "best.pt"
    assert source.info["run"] == run_dir.name and source.info["metrics"] == {"bleu_beam": 3.2}


def fake_fetch(calls):
    def fetch(model_id=None, *, name=None, tag=None, project=None, timeout_s):
        calls.append((model_id, name, tag, project, timeout_s))
        return RegisteredModel(id=model_id or "f" * 32, name=name or "m", project=None,
                               tags=[tag or "candidate"],
                               published=True, metadata={"bleu": "3.2"}, local_path=Path("/models/best.pt"))
    return fetch


@pytest.mark.parametrize(("ref", "tag", "expected"), [
    ("translator:production", None, (None, "translator", "production", "stepwise")),
    ("translator", "production", (None, "translator", "production", "stepwise")),
    # ids: any project
    ("0123456789abcdef0123456789abcdef", None, ("0123456789abcdef0123456789abcdef", None, None, None)),
])
def test_registered_models_by_name_and_tag_or_by_id(monkeypatch, tmp_path, ref, tag, expected):
    import src.orchestration as store

    calls = []
    monkeypatch.setattr(store, "fetch_model", fake_fetch(calls))
    source = resolve_source(ref, tmp_path, tag=tag, timeout_s=9.0, project="stepwise")
    assert calls == [(*expected, 9.0)]
    assert source.checkpoint == Path("/models/best.pt") and source.info["source"] == "clearml"
    assert source.info["clearml"]["model_id"] == (expected[0] or "f" * 32)
    assert source.info["metrics"] == {"bleu": "3.2"}


def test_something_that_is_nothing_says_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r"no run 'nothing'.*nor is 'nothing' a registered model \(expected "
                                                r"NAME:TAG, NAME with --tag TAG, or a 32-hex-digit ClearML "
                                                r"model id\)"):
        resolve_source("nothing", tmp_path)


def test_a_name_lookup_searches_the_default_config_project_unless_told():
    from src.experiment import load_config
    from src.serving.cli import registry_project

    assert registry_project(None) == load_config().tracking.project_name == "stepwise-transformers"
    assert registry_project("other") == "other" and registry_project("") is None  # '': every project
