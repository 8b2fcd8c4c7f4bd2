"""Pytest fixtures for the ClearML stand-in.

Bring them into a test module by assignment (``clearml_stub = stub_fixtures.clearml_stub``), or
for the whole suite list this module in ``pytest_plugins`` of the root ``tests/conftest.py``.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clearml_stub.stub import ClearMLStub


@pytest.fixture
def clearml_stub(tmp_path: Path) -> Iterator[ClearMLStub]:
    """A fresh stand-in server per test. Drive the SDK in a subprocess (``run_python``, ``start_agent``):
    its global state (Task singleton, patched stdout, atexit hooks) then never leaks into pytest."""
    with ClearMLStub(tmp_path / "clearml_stub") as stub:
        yield stub


@pytest.fixture
def isolated_clearml_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process sees no ClearML settings of the machine: no CLEARML_* variables, an empty
    ``clearml.conf``, a tmp HOME. Returns the config file path; tests set what they need."""
    for key in list(os.environ):
        if key.startswith(("CLEARML_", "TRAINS_")):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    config_file = tmp_path / "clearml.conf"
    config_file.write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(config_file))
    _forget_loaded_clearml_config(monkeypatch)
    return config_file


@pytest.fixture
def clearml_stub_env(
    clearml_stub: ClearMLStub, isolated_clearml_env: Path, monkeypatch: pytest.MonkeyPatch
) -> ClearMLStub:
    """The stub, with this process pointed at it (for in-process calls such as ``ensure_queues``)."""
    for key, value in clearml_stub.env.items():
        monkeypatch.setenv(key, value)
    return clearml_stub


def _forget_loaded_clearml_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK loads clearml.conf once per process and caches it on these classes (private API);
    clearing them makes it read this test's CLEARML_CONFIG_FILE. Restored after the test."""
    from clearml.config import ConfigSDKWrapper, ConfigWrapper

    monkeypatch.setattr(ConfigWrapper, "_config", None)
    monkeypatch.setattr(ConfigSDKWrapper, "_config_sdk", None)
