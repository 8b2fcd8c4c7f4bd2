"""Each clearml 2.1.12 workaround in src/tracking/sdk_compat.py, and a test that notices when upstream
fixes it.

When a ``*_still_present`` test fails after a clearml upgrade, the bug is gone: delete the named
workaround from src/tracking/sdk_compat.py (and its call sites), then delete the test.
"""

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import clearml
import pytest

from src.tracking import sdk_compat
from tests.tracking.conftest import subprocess_env

pytestmark = pytest.mark.timeout(120, method="thread")


@pytest.fixture
def offline_task(offline_clearml: Path):
    from clearml import Task

    Task.set_offline(True)
    sdk_compat.set_report_in_subprocess(False)  # only to keep close() fast; unrelated to the bug tested
    task = Task.init(
        project_name="unit-tests", task_name="sdk-bug", reuse_last_task_id=False,
                     auto_connect_arg_parser=False,
        auto_connect_frameworks=False, auto_resource_monitoring=False,
    )  # fmt: skip
    yield task
    task.close()


def test_offline_output_model_bug_still_present(offline_task, tmp_path: Path):
    """The raw SDK, without sdk_compat.update_weights: offline update_weights must still fail."""
    from clearml import OutputModel

    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    model = OutputModel(task=offline_task, name="raw", framework="PyTorch")
    try:
        model.update_weights(weights_filename=weights.as_posix(), auto_delete_file=False)
    except AttributeError as err:
        assert "locked" in str(err), f"a different AttributeError than the known bug: {err}"
    else:
        pytest.fail(
            f"clearml {clearml.__version__} fixed the offline OutputModel bug ('DummyModel' object has no "
            "attribute 'locked'): remove the workaround in src/tracking/sdk_compat.update_weights "
            "(call model.update_weights directly in Tracker.register_model) and delete this test."
        )


def test_update_weights_workaround_records_the_model_offline(offline_task, tmp_path: Path):
    from clearml import OutputModel

    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    model = OutputModel(task=offline_task, name="patched", framework="PyTorch")
    sdk_compat.update_weights(model, weights_filename=weights.as_posix(), auto_delete_file=False)
    folder = Path(offline_task.get_offline_mode_folder())
    assert (folder / "models" / "w.pt").read_bytes() == b"weights"


def test_offline_model_record_bug_still_present(offline_task):
    """Offline models are recorded with config_text and config_dict; OutputModel accepts only one."""
    from clearml import OutputModel

    try:
        OutputModel(task=offline_task, name="both", config_text="a = 1", config_dict={"a": 1})
    except Exception as err:  # noqa: BLE001 - the SDK raises a bare Exception here
        assert "Only one of" in str(err), f"a different error than the known bug: {err}"
    else:
        pytest.fail(
            f"clearml {clearml.__version__}: OutputModel accepts config_text with config_dict, so "
            "Task.import_offline_session can import models again: remove "
            "src/tracking/sdk_compat.importable_model_record and its call, and delete this test."
        )


def test_importable_model_record_keeps_the_dict():
    record = {"init": {"config_text": "a = 1", "config_dict": {"a": 1}, "name": "m"}, "weights": {}}
    fixed = sdk_compat.importable_model_record(record)
    assert fixed["init"] == {"config_text": None, "config_dict": {"a": 1}, "name": "m"}
    assert record["init"]["config_text"] == "a = 1"  # the input is not modified


def test_repository_detection_still_imports_ipython():
    """preload_ipython exists because the repository-detection thread imports IPython (a race with
    matplotlib)."""
    from clearml.backend_interface.task.repo import scriptinfo

    if "from IPython import" not in inspect.getsource(scriptinfo):
        pytest.fail(
            f"clearml {clearml.__version__}: repository detection no longer imports IPython; remove "
            "src/tracking/sdk_compat.preload_ipython and its call in Tracker.start, and delete this test."
        )


def _properties_after_repository_detection(task, set_properties) -> dict:
    """The session's user properties when ``set_properties`` runs while the repository-detection thread
    reloads the task, as ``_update_repository`` does (clearml/backend_interface/task/task.py: ``with
    self._edit_lock: self.reload(); self.data.script = ...; self._edit(script=...)``). ``reload`` is
    ``self._data = self._reload()`` (backend_interface/base.py), and ``_reload`` reads task.json: the edit
    lands between that read and the assignment."""
    import json
    import threading

    task._wait_for_repo_detection(timeout=60)  # the real thread, done: the one below is the only writer
    reloaded, written = threading.Event(), threading.Event()

    def detection() -> None:
        with task._edit_lock:
            stored = task._reload()
            reloaded.set()
            written.wait(timeout=2)  # the other edit lands here, unless it waits for the lock
            task._data = stored
            task.data.script = task.data.script
            task._edit(script=task.data.script)

    thread = threading.Thread(target=detection)
    thread.start()
    reloaded.wait(timeout=10)
    set_properties(task)
    written.set()
    thread.join(timeout=30)
    stored = json.loads((Path(task.get_offline_mode_folder()) / "task.json").read_text())
    properties = (stored.get("hyperparams") or {}).get("properties") or {}
    return {name: item["value"] for name, item in properties.items()}


def test_offline_user_properties_race_still_present(offline_task):
    """The raw SDK: properties set while repository detection reloads the task are written over."""
    found = _properties_after_repository_detection(offline_task, lambda t: t.set_user_properties(family="x"))
    if found.get("family") == "x":
        pytest.fail(
            f"clearml {clearml.__version__}: offline set_user_properties survives the repository-detection "
            "thread's reload and write: remove src/tracking/sdk_compat.set_user_properties (call "
            "task.set_user_properties in Tracker.set_properties) and delete this test."
        )


def test_set_user_properties_workaround_keeps_them(offline_task):
    found = _properties_after_repository_detection(
        offline_task, lambda t: sdk_compat.set_user_properties(t, family="x", parameters=7))
    assert found == {"family": "x", "parameters": "7"}


SLOW_CLOSE = textwrap.dedent(
    """
    import time
    from clearml import Task
    Task.set_offline(True)
    task = Task.init(project_name="unit-tests", task_name="slow-close", reuse_last_task_id=False,
                     auto_connect_arg_parser=False, auto_connect_frameworks=False,
                     auto_resource_monitoring=False)
    task.get_logger().report_scalar("loss", "train", 1.0, 0)
    tic = time.monotonic()
    task.close()
    print("CLOSE_SECONDS", time.monotonic() - tic)
    """
)


@pytest.mark.slow
def test_offline_close_with_reporting_subprocess_still_slow(tmp_path: Path):
    """SDK defaults in a fresh process (hard-killed after 90 s): offline close takes about 11 s."""
    result = subprocess.run(
        ["timeout", "-s", "KILL", "90", sys.executable, "-c", SLOW_CLOSE],
        env=subprocess_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    seconds = float(result.stdout.split("CLOSE_SECONDS")[1].split()[0])
    if seconds < 5.0:
        pytest.fail(
            f"clearml {clearml.__version__}: offline close with the reporting subprocess took {seconds:.1f} "
            "s; the slow close is fixed: remove src/tracking/sdk_compat.set_report_in_subprocess and its "
            "calls."
        )


GO_ONLINE = textwrap.dedent(
    """
    from clearml import Task
    from clearml.backend_api import Session
    from clearml.backend_api.session.defs import MissingConfigError
    Task.set_offline(True)
    task = Task.init(project_name="unit-tests", task_name="go-online", reuse_last_task_id=False,
                     auto_connect_arg_parser=False, auto_connect_frameworks=False,
                     auto_resource_monitoring=False)
    task.close()
    sessions = Session._get_all_active_sessions()
    try:
        Task.set_offline(False)
        print("RAISED none")
    except MissingConfigError:
        print("RAISED MissingConfigError")
    print("NO_TOKEN", [not hasattr(s, "_TokenManager__token") for s in sessions])
    """
)


def test_going_online_still_reconnects_the_offline_sessions(tmp_path: Path):
    """The raw SDK in a fresh process: ``set_offline(False)`` reconnects the offline task's session, which
    without a server configured fails half-way and is left without a token (its reporter would retry
    forever): what ``sdk_compat.leave_offline_mode`` avoids."""
    result = subprocess.run(
        ["timeout", "-s", "KILL", "90", sys.executable, "-c", GO_ONLINE],
        env=subprocess_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    if "RAISED MissingConfigError" not in result.stdout or "True" not in result.stdout.split("NO_TOKEN")[1]:
        pytest.fail(f"clearml {clearml.__version__}: going online no longer breaks the offline sessions "
                    f"({result.stdout.strip()}); sdk_compat.leave_offline_mode may call "
                    "Task.set_offline(False)")


def test_leave_offline_mode_turns_offline_off_and_reconnects_nothing(offline_task):
    from clearml import Task
    from clearml.backend_api import Session

    assert Task.is_offline()
    offline_task.close()
    sdk_compat.leave_offline_mode()
    assert not Task.is_offline() and Session._sessions_weakrefs == []
