"""Workarounds for known clearml 2.1.12 bugs, kept in this one module.

Most touch private SDK state or files. tests/tracking/test_sdk_compat.py reproduces each bug on
the raw SDK; when an upgrade fixes one, its test fails and says which function here to delete.
"""

import importlib
import importlib.util
from typing import Any

from clearml import OutputModel, Task
from clearml.backend_interface.task.task import Task as _BackendTask

# The SDK default (a lazily read config value, True on Linux), kept to restore it for online tasks.
_DEFAULT_REPORT_SUBPROCESS = _BackendTask.__dict__["_report_subprocess_enabled"]


def update_weights(model: OutputModel, **kwargs: Any) -> str:
    """``OutputModel.update_weights`` that also works in offline mode.

    Offline, the model gets an ``offline-...`` id, so ``update_weights`` checks ``model.published``,
    which reads ``.locked`` from the SDK's ``DummyModel`` placeholder: it never has that attribute
    and the call raises ``AttributeError: 'DummyModel' object has no attribute 'locked'``.
    An offline model is never published, so ``locked=False`` is the true value.
    """
    placeholder = getattr(model, "_floating_data", None)
    if Task.is_offline() and placeholder is not None and not hasattr(placeholder, "locked"):
        placeholder.locked = False
    return model.update_weights(**kwargs)


def importable_model_record(record: dict[str, Any]) -> dict[str, Any]:
    """An ``offline_output_models`` entry of task.json that ``Task.import_offline_session`` accepts.

    Offline, the SDK records both ``config_text`` and ``config_dict`` of a model; the import passes
    both to ``OutputModel(...)``, which allows only one (``Exception: Only one of (config_text,
    config_dict) is allowed``), so no session with a configured model imports. Keep the dict.
    """
    init = dict(record.get("init") or {})
    if init.get("config_dict") is not None:
        init["config_text"] = None
    return {**record, "init": init}


def record_model_config_once(task: Task) -> None:
    """Keep only ``config_dict`` in the offline record of the model ``update_weights`` just added.

    The cause of ``importable_model_record``'s bug, at the source: offline ``update_weights``
    snapshots both ``config_text`` and ``config_dict`` of the model into
    ``task._offline_output_models``, and ClearML's own importer (``clearml-task
    --import-offline-session``, ``Task.import_offline_session``) then refuses the session. The
    record is written to task.json at the task's next edit (the weights artifact upload that
    follows), so clearing the text here makes the session importable by the SDK alone.
    """
    records = getattr(task, "_offline_output_models", None) or []
    if records and (records[-1].get("init") or {}).get("config_dict") is not None:
        records[-1]["init"]["config_text"] = None


def set_user_properties(task: Task, /, **properties: str | int | float) -> None:
    """``Task.set_user_properties`` that the repository-detection thread cannot undo offline.

    ``Task.init`` starts ``_update_repository`` in a thread; under ``task._edit_lock`` it reloads
    task.json from disk into ``task.data`` and then writes ``task.data`` back with the script. Offline,
    ``set_user_properties`` (``HyperParams.edit_hyper_params``) writes task.json without that lock,
    so when it lands between the thread's read and its write the thread writes the older data back and
    the properties are gone from the session. Holding the same (re-entrant) lock makes the two edits
    take turns. Online the server merges the properties, so nothing is lost there. (``task`` is
    positional-only: ``task`` is also a property name.)
    """
    with task._edit_lock:
        task.set_user_properties(**properties)


def set_report_in_subprocess(enabled: bool) -> None:
    """Choose the SDK's reporting mode for tasks created from now on (a process-wide class setting).

    Offline, with the default forked reporting subprocess, ``Task.close()`` waits about 11 s per
    task (its flush and stop wait on a reporter that does not answer until the SDK's 10 s live
    check gives up); one close here hung for over 100 s. With a reporting thread close takes
    about 1 s and the session holds the same events.
    ``enabled=True`` restores the SDK default.
    """
    _BackendTask._report_subprocess_enabled = _DEFAULT_REPORT_SUBPROCESS if enabled else False


def preload_ipython() -> None:
    """Import IPython, if installed, before ``Task.init`` starts its repository-detection thread.

    That thread imports IPython while the main thread may be creating a matplotlib figure, and
    matplotlib reads ``sys.modules["IPython"].version_info`` from the half-imported module:
    ``AttributeError: partially initialized module 'IPython' has no attribute 'version_info'``.
    """
    if importlib.util.find_spec("IPython") is not None:
        importlib.import_module("IPython")


def leave_offline_mode() -> None:
    """Turn the SDK's process-wide offline flags off without reconnecting the sessions made so far.

    ``Task.set_offline(False)`` ends in ``Session._make_all_sessions_go_online``
    (``clearml/backend_api/session/session.py``), which reconnects every session still alive in the
    process. One made offline without any server configured is left half-initialised, without a token,
    and a reporter thread that still holds it retries forever ("'Session' object has no attribute
    '_TokenManager__token'"); one made online against a server that has since gone raises a connection
    error. Here the flags are cleared as ``set_offline`` clears them, and the sessions made so far are
    forgotten instead of reconnected: the next task opens its own session.
    """
    from clearml.backend_api import Session
    from clearml.backend_api.session.defs import ENV_OFFLINE_MODE
    from clearml.backend_interface.base import InterfaceBase

    ENV_OFFLINE_MODE.set(False)
    InterfaceBase._offline_mode = False
    Session._offline_mode = False
    Session._sessions_weakrefs = []
    set_report_in_subprocess(True)
