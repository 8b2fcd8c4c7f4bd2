"""Serving a registered model against the ClearML stand-in (tests/clearml_stub): by model id and by name:tag.

The model is registered by the project's own Tracker in a child process, then ``serve`` fetches
it through src/tracking in the server's process; the stand-in proves only that the SDK is driven
correctly, it is not a ClearML server.
"""

import shutil

import httpx
import pytest

from src.inference import load_for_inference
from src.inference.translate import translate_texts
from tests.clearml_stub import fixture as stub_fixtures
from tests.serving.conftest import ServerProcess

clearml_stub = stub_fixtures.clearml_stub
pytestmark = pytest.mark.timeout(240)

REGISTER = """
from pathlib import Path
from src.tracking import Tracker
with Tracker.start(project="serving", task_name="train", output_dir=Path("out")) as tracker:
    model_id = tracker.register_model(Path({checkpoint!r}), name="tiny-translator", tags=["production"],
                                      config={{}}, metadata={{"bleu": 3.2, "stage": "production"}},
                                      publish=True)
print("MODEL", model_id)
"""


def register(clearml_stub, checkpoint) -> str:
    result = clearml_stub.run_python(REGISTER.format(checkpoint=str(checkpoint)), timeout=120)
    assert result.returncode == 0, result.output
    model_id = result.stdout.split("MODEL ")[1].split()[0]
    assert [m["id"] for m in clearml_stub.models] == [model_id]
    return model_id


def check_served(clearml_stub, ref: str, model_id: str, checkpoint, log, *args: str) -> None:
    """``serve REF`` reports the registered model and translates with exactly its weights."""
    texts = ["Das ist gut.", "Wo ist der Bahnhof?"]
    expected = translate_texts(load_for_inference(checkpoint, "cpu"), texts)
    server = ServerProcess([ref, *args], log, env=clearml_stub.subprocess_env({"OMP_NUM_THREADS": "1"}))
    try:
        info = httpx.get(f"{server.url}/v1/model", timeout=5).json()
        assert info["source"] == "clearml" and info["family"] == "encoder_decoder"
        assert (info["clearml"]["model_id"], info["clearml"]["stage"]) == (model_id, "production")
        assert info["metrics"] == {"bleu": "3.2", "stage": "production"}
        answer = httpx.post(f"{server.url}/v1/translate", json={"texts": texts}, timeout=30)
        assert answer.json()["translations"] == expected
    finally:
        server.stop()
    assert clearml_stub.unknown_calls == []


def test_serve_a_registered_model_by_id(clearml_stub, checkpoints, tmp_path, one_thread):
    checkpoint = shutil.copy(checkpoints["translate"], tmp_path / "best.pt")
    model_id = register(clearml_stub, checkpoint)
    check_served(clearml_stub, model_id, model_id, checkpoint, tmp_path / "serve.log")
    with pytest.raises(AssertionError, match="server exited with 1 before /health") as err:
        ServerProcess(["0" * 32], tmp_path / "unknown.log", env=clearml_stub.subprocess_env())
    assert f"no model with id '{'0' * 32}' on the ClearML server" in str(err.value)


# ~20 s: registration and a second server; the lookup itself is in tests/tracking/test_model_store.py
@pytest.mark.slow
def test_serve_a_registered_model_by_name_and_tag(clearml_stub, checkpoints, tmp_path, one_thread):
    checkpoint = shutil.copy(checkpoints["translate"], tmp_path / "best.pt")
    model_id = register(clearml_stub, checkpoint)
    check_served(clearml_stub, "tiny-translator:production", model_id, checkpoint, tmp_path / "serve.log",
                 "--project", "serving")  # the project it was registered in (the default is the config's)
    with pytest.raises(AssertionError, match="server exited with 1 before /health") as err:
        ServerProcess(["tiny-translator:production", "--project", "elsewhere"], tmp_path / "elsewhere.log",
                      env=clearml_stub.subprocess_env())
    assert "elsewhere" in str(err.value) and "Traceback" not in str(err.value)  # the SDK: no such project
