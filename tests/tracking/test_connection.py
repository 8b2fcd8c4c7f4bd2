"""Offline by default: what counts as 'ClearML is configured', and no silent wait for a dead server."""

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from src.tracking import check_server_reachable, clearml_configured, resolve_offline
from tests.tracking.conftest import subprocess_env


def test_nothing_configured_means_offline(no_clearml_config: Path):
    assert not clearml_configured()
    assert resolve_offline(None) is True


@pytest.mark.parametrize("variable", ["CLEARML_API_HOST", "CLEARML_TASK_ID"])
def test_api_host_or_agent_task_means_configured(no_clearml_config: Path, monkeypatch, variable: str):
    monkeypatch.setenv(variable, "http://localhost:8008" if variable == "CLEARML_API_HOST" else "abc")
    assert clearml_configured()
    assert resolve_offline(None) is False


def test_config_file_in_home_means_configured(no_clearml_config: Path):
    (no_clearml_config / "clearml.conf").write_text("api { }\n")
    assert clearml_configured()


def test_config_file_variable_counts_only_if_the_file_exists(
    no_clearml_config: Path, monkeypatch, tmp_path: Path
):
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(tmp_path / "missing.conf"))
    assert not clearml_configured()
    (tmp_path / "missing.conf").write_text("api { }\n")
    assert clearml_configured()


def test_offline_mode_variable_and_explicit_choice_win(no_clearml_config: Path, monkeypatch):
    monkeypatch.setenv("CLEARML_API_HOST", "http://localhost:8008")
    monkeypatch.setenv("CLEARML_OFFLINE_MODE", "1")
    assert resolve_offline(None) is True
    assert resolve_offline(False) is False


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_fails_fast_with_advice():
    tic = time.monotonic()
    with pytest.raises(ConnectionError, match="not reachable.*run offline"):
        check_server_reachable(f"http://127.0.0.1:{_closed_port()}", timeout_s=2.0)
    assert time.monotonic() - tic < 3.0


START_AGAINST_DEAD_SERVER = textwrap.dedent(
    """
    from pathlib import Path
    from src.tracking import Tracker
    try:
        Tracker.start(project="p", task_name="t", offline=None, server_timeout_s=2.0)
    except ConnectionError as err:
        print("REFUSED", err)
    """
)


def test_online_start_checks_the_server_before_task_init(tmp_path: Path):
    """In a child process hard-killed after 60 s: were the check missing, Task.init would retry for
    minutes."""
    env = subprocess_env(tmp_path) | {
        "CLEARML_API_HOST": f"http://127.0.0.1:{_closed_port()}",
        "CLEARML_API_ACCESS_KEY": "unit",
        "CLEARML_API_SECRET_KEY": "unit",
    }
    result = subprocess.run(
        ["timeout", "-s", "KILL", "60", sys.executable, "-c", START_AGAINST_DEAD_SERVER],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "REFUSED ClearML server" in result.stdout
