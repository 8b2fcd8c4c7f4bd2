"""src.orchestration.model_store: registered models by id or name and tag, with fast, explained failures."""

import socket
import time

import pytest

from src.orchestration import RegisteredModel, ServerMisconfiguredError, ServerUnreachableError, fetch_model
from tests.clearml_stub import fixture as stub_fixtures

clearml_stub = stub_fixtures.clearml_stub
isolated_clearml_env = stub_fixtures.isolated_clearml_env


def test_id_or_name_exactly_one():
    with pytest.raises(ValueError, match="give a model id or a model name, not both or neither"):
        fetch_model("a" * 32, name="m")
    with pytest.raises(ValueError, match="not both or neither"):
        fetch_model()


def test_no_server_configured_is_said_at_once(isolated_clearml_env, monkeypatch):
    # an empty clearml.conf
    with pytest.raises(ServerMisconfiguredError, match="No ClearML API server is configured"):
        fetch_model("a" * 32)
    monkeypatch.delenv("CLEARML_CONFIG_FILE")  # and no config at all
    with pytest.raises(ServerMisconfiguredError,
                       match="a registered model needs a ClearML server, and none is configured"):
        fetch_model("a" * 32)


@pytest.mark.timeout(30)
def test_an_unreachable_server_fails_within_seconds(isolated_clearml_env, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections are refused
    monkeypatch.setenv("CLEARML_API_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "key")
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", "secret")
    start = time.monotonic()
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{port} did not answer"):
        fetch_model(name="m", tag="production", timeout_s=3.0)
    assert time.monotonic() - start < 10.0


def test_stage_comes_from_the_tags_then_the_metadata(tmp_path):
    def model(tags, metadata):
        return RegisteredModel("i", "m", None, tags, False, metadata, tmp_path)

    assert model(["x", "production"], {"stage": "candidate"}).stage == "production"
    assert model(["x"], {"stage": "candidate"}).stage == "candidate"
    assert model([], {}).stage is None


FETCH = """
from src.orchestration import fetch_model, ModelNotFoundError
for kwargs in ({{"model_id": {model_id!r}}}, {{"name": "tiny", "tag": "production"}},
               {{"name": "tiny", "tag": "candidate"}}):
    m = fetch_model(**kwargs, timeout_s=60)
    print("FOUND", m.id, m.stage, m.published, open(m.local_path, "rb").read().decode())
for kwargs in ({{"name": "tiny", "tag": "nope"}}, {{"model_id": "0" * 32}}):
    try:
        fetch_model(**kwargs, timeout_s=60)
    except ModelNotFoundError as err:
        print("MISSING", err)
"""

REGISTER = """
from pathlib import Path
from src.tracking import Tracker
ids = []
for stage, text in (("candidate", "old"), ("production", "best"), ("candidate", "new")):
    Path(stage + text).write_text(text)
    with Tracker.start(project="p", task_name=text, output_dir=Path("out")) as tracker:
        ids.append(tracker.register_model(Path(stage + text), name="tiny", tags=[stage], config={{}},
                                          metadata={{}}))
print("IDS", " ".join(ids))
"""


@pytest.mark.timeout(240)
def test_fetch_by_id_and_by_name_and_tag_downloads_the_right_weights(clearml_stub):
    registered = clearml_stub.run_python(REGISTER.format(), timeout=150)
    assert registered.returncode == 0, registered.output
    _old, best, new = registered.stdout.split("IDS ")[1].split()
    # a new process: a real download
    fetched = clearml_stub.run_python(FETCH.format(model_id=best), timeout=90)
    assert fetched.returncode == 0, fetched.output
    found = [line.split()[1:] for line in fetched.stdout.splitlines() if line.startswith("FOUND")]
    assert found == [[best, "production", "False", "best"], [best, "production", "False", "best"],
                     [new, "candidate", "False", "new"]]  # name and tag: the newest match
    missing = [line for line in fetched.stdout.splitlines() if line.startswith("MISSING")]
    assert missing == ["MISSING no model named 'tiny' with tag 'nope' on the ClearML server",
                       f"MISSING no model with id '{'0' * 32}' on the ClearML server"]
    assert clearml_stub.unknown_calls == []
