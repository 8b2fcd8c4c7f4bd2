"""src.orchestration.server and src.config.queues: the fast connectivity check, idempotent queue
creation, the queue config."""

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from src.config import ConfigError
from src.config.queues import QUEUE_CONFIG_PATH, load_queue_config
from src.orchestration import ServerMisconfiguredError, ServerUnreachableError, check_server, ensure_queues
from tests.clearml_stub import fixture as stub_fixtures
from tests.clearml_stub.stub import ClearMLStub

# The stand-in's fixtures, by assignment (an import would read as unused to linters).
clearml_stub = stub_fixtures.clearml_stub
isolated_clearml_env = stub_fixtures.isolated_clearml_env
clearml_stub_env = stub_fixtures.clearml_stub_env


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that accepts connections (kernel backlog) but never answers: the hung-server case."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def _point_at(
    monkeypatch: pytest.MonkeyPatch, api_url: str, key: str = "key", secret: str = "secret"
) -> None:
    monkeypatch.setenv("CLEARML_API_HOST", api_url)
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", key)
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", secret)


@pytest.mark.timeout(20)
def test_unreachable_host_fails_fast_with_a_clear_message(isolated_clearml_env, monkeypatch, closed_port):
    _point_at(monkeypatch, f"http://127.0.0.1:{closed_port}")
    start = time.monotonic()
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{closed_port} did not answer") as err:
        check_server(timeout=2.0)
    assert time.monotonic() - start < 5.0
    assert "reachable from this machine" in str(err.value)


@pytest.mark.timeout(20)
def test_server_that_never_answers_fails_within_the_timeout(isolated_clearml_env, monkeypatch, silent_port):
    _point_at(monkeypatch, f"http://127.0.0.1:{silent_port}")
    start = time.monotonic()
    with pytest.raises(ServerUnreachableError, match="did not answer within 1 s"):
        check_server(timeout=1.0)
    assert time.monotonic() - start < 5.0


@pytest.mark.timeout(20)
def test_missing_credentials_are_reported_before_any_request(isolated_clearml_env, monkeypatch, closed_port):
    monkeypatch.setenv("CLEARML_API_HOST", f"http://127.0.0.1:{closed_port}")
    with pytest.raises(ServerMisconfiguredError, match="No ClearML credentials for .*clearml-init"):
        check_server()


@pytest.mark.timeout(20)
def test_no_server_configured_is_reported(isolated_clearml_env):
    with pytest.raises(ServerMisconfiguredError, match="No ClearML API server is configured"):
        check_server()


@pytest.mark.timeout(20)
def test_host_and_keys_come_from_clearml_conf(isolated_clearml_env: Path, clearml_stub: ClearMLStub):
    isolated_clearml_env.write_text(clearml_stub.config_file.read_text())
    info = check_server()
    assert info.api_url == clearml_stub.api_url
    assert info.files_url == clearml_stub.files_url


@pytest.mark.timeout(20)
def test_rejected_credentials_are_a_configuration_error(clearml_stub_env: ClearMLStub, monkeypatch):
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", "wrong")
    with pytest.raises(ServerMisconfiguredError, match="rejected the credentials"):
        check_server()


@pytest.mark.timeout(20)
def test_a_url_that_is_not_the_api_server_is_a_configuration_error(
    clearml_stub_env: ClearMLStub, monkeypatch
):
    monkeypatch.setenv("CLEARML_API_HOST", clearml_stub_env.files_url)
    with pytest.raises(ServerMisconfiguredError, match="is this the API server"):
        check_server()


@pytest.mark.timeout(20)
def test_reachable_server_reports_its_versions(clearml_stub_env: ClearMLStub):
    info = check_server()
    assert (info.api_url, info.files_url) == (clearml_stub_env.api_url, clearml_stub_env.files_url)
    assert info.api_version == "2.23"
    assert info.server_version


@pytest.mark.timeout(60)
def test_ensure_queues_creates_missing_queues_once(clearml_stub_env: ClearMLStub):
    clearml_stub_env.add_queue("cpu")  # already there: must be reused, not duplicated
    first = ensure_queues(["services", "cpu", "gpu"])
    creates = clearml_stub_env.state.calls.count("queues.create")
    second = ensure_queues(["services", "cpu", "gpu"])

    assert first == second
    assert sorted(first) == ["cpu", "gpu", "services"]
    assert {q["name"]: q["id"] for q in clearml_stub_env.queues} == first
    assert creates == 2
    assert clearml_stub_env.state.calls.count("queues.create") == creates


@pytest.mark.timeout(20)
def test_ensure_queues_on_an_unreachable_server_fails_fast(isolated_clearml_env, monkeypatch, closed_port):
    _point_at(monkeypatch, f"http://127.0.0.1:{closed_port}")
    start = time.monotonic()
    with pytest.raises(ServerUnreachableError):
        ensure_queues(["gpu"], timeout=2.0)
    assert time.monotonic() - start < 5.0


def test_shipped_queue_config_places_every_pipeline_step():
    config = load_queue_config(QUEUE_CONFIG_PATH)
    assert config.queue_names == ["services", "cpu", "gpu"]
    placement = {step: config.queue_for(step) for step in config.steps}
    assert placement == {
        "controller": "services",
        "data_prep": "cpu",
        "tokenize": "cpu",
        "train": "gpu",
        "evaluate": "gpu",
        "register": "cpu",
    }
    assert "--ipc=host" in config.queue("gpu").docker_args
    assert config.queue("gpu").docker_image.startswith("pytorch/pytorch:")
    assert config.queue("cpu").docker_image == "python:3.11-slim"


def test_unknown_step_or_queue_names_the_known_ones():
    config = load_queue_config()
    with pytest.raises(ConfigError, match=r"unknown pipeline step 'trian', expected one of \['controller'"):
        config.queue_for("trian")
    with pytest.raises(
        ConfigError, match=r"unknown queue 'gpu2', expected one of \['cpu', 'gpu', 'services'\]"
    ):
        config.queue("gpu2")


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "queues.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_step_on_an_undefined_queue_is_rejected_when_loading(tmp_path):
    path = _write(
        tmp_path, {"queues": {"cpu": {"docker_image": "python:3.11-slim"}}, "steps": {"train": "gpu"}}
    )
    with pytest.raises(ConfigError, match=r"step 'train' uses queue 'gpu', expected one of \['cpu'\]"):
        load_queue_config(path)


def test_unknown_keys_and_missing_files_are_errors(tmp_path):
    path = _write(tmp_path, {"queues": {"cpu": {"docker_image": "x", "gpus": 1}}, "steps": {}})
    with pytest.raises(ConfigError, match="gpus"):
        load_queue_config(path)
    with pytest.raises(ConfigError, match="queue config not found"):
        load_queue_config(tmp_path / "missing.yaml")


def test_queue_config_is_frozen():
    config = load_queue_config()
    with pytest.raises(Exception, match="frozen"):
        config.queue("gpu").docker_image = "other"
