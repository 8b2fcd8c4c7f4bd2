"""The stand-in server itself: every call gets an answer, errors are envelopes, state is truthful.

Plain HTTP, no SDK: if these fail, the contract tests' failures say nothing about the SDK.
"""

import pytest
import requests

from tests.clearml_stub import ACCESS_KEY, SECRET_KEY
from tests.clearml_stub import fixture as stub_fixtures
from tests.clearml_stub.stub import ClearMLStub

# The stand-in's fixtures, by assignment (an import would read as unused to linters).
clearml_stub = stub_fixtures.clearml_stub


def _call(
    stub: ClearMLStub, endpoint: str, body: dict | None = None, token: str | None = None
) -> requests.Response:
    if token is None:
        token = requests.post(f"{stub.api_url}/auth.login", auth=(ACCESS_KEY, SECRET_KEY), timeout=5).json()[
            "data"
        ]["token"]
    return requests.post(
        f"{stub.api_url}/v2.23/{endpoint}",
        json=body or {},
        timeout=5,
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.mark.timeout(20)
def test_unknown_endpoint_is_a_400_envelope_and_is_recorded(clearml_stub):
    response = _call(clearml_stub, "tasks.no_such_action", {"task": "x"})
    assert response.status_code == 400
    meta = response.json()["meta"]
    assert (meta["result_code"], meta["endpoint"]["name"]) == (400, "tasks.no_such_action")
    assert "not implemented by the test stub" in meta["result_msg"]
    assert clearml_stub.unknown_calls == ["tasks.no_such_action"]


@pytest.mark.timeout(20)
def test_wrong_or_missing_credentials_are_401(clearml_stub):
    bad = requests.post(f"{clearml_stub.api_url}/auth.login", auth=(ACCESS_KEY, "wrong"), timeout=5)
    assert bad.status_code == 401
    assert _call(clearml_stub, "tasks.get_all", token="").status_code == 401


@pytest.mark.timeout(20)
def test_task_status_follows_the_apiserver_state_machine(clearml_stub):
    queue = _call(clearml_stub, "queues.create", {"name": "gpu"}).json()["data"]["id"]
    task = _call(clearml_stub, "tasks.create", {"name": "t", "type": "training"}).json()["data"]["id"]

    assert _call(clearml_stub, "tasks.completed", {"task": task}).status_code == 400  # created -/-> completed
    assert _call(clearml_stub, "tasks.enqueue", {"task": task, "queue": queue}).status_code == 200
    assert _call(clearml_stub, "tasks.enqueue", {"task": task, "queue": queue}).status_code == 400  # twice
    entry = _call(clearml_stub, "queues.get_next_task", {"queue": queue}).json()["data"]["entry"]
    assert entry["task"] == task
    assert _call(clearml_stub, "queues.get_next_task", {"queue": queue}).json()["data"] == {}
    assert _call(clearml_stub, "tasks.started", {"task": task}).status_code == 200
    assert _call(clearml_stub, "tasks.completed", {"task": task}).status_code == 200
    assert clearml_stub.status_history(task) == ["created", "queued", "in_progress", "completed"]


@pytest.mark.timeout(20)
def test_files_host_stores_multipart_uploads_under_their_path(clearml_stub):
    url = f"{clearml_stub.files_url}/proj/task.1/artifacts/summary/"
    upload = requests.post(url, files={"summary.json": ("summary.json", b'{"a": 1}')}, timeout=5)
    assert upload.status_code == 200
    assert requests.get(url + "summary.json", timeout=5).content == b'{"a": 1}'
    assert requests.get(url + "missing.json", timeout=5).status_code == 404
    assert clearml_stub.file_for_url(url + "summary.json") == b'{"a": 1}'
