"""``status.json``, a run's state: the run's status, each step's, and what a resume changed.

Written only here (atomically: a kill leaves the old file or the new), read by ``runs list``, the
report, ``--resume`` and the offline-session recovery. A step is ``pending``, ``running``,
``completed`` (with its ``output``) or ``failed`` (with its ``reason`` and ``traceback``; ``stopped``
when a signal or Ctrl-C ended it); the run is ``running``, ``failed`` or ``completed``.
"""

import json
import time
import traceback
from pathlib import Path
from typing import Any

from src.runs.files import read_json, write_atomically

STATUS_FILE = "status.json"


def read_status(run_dir: Path) -> dict[str, Any]:
    """The run's ``status.json``; a damaged one raises ``DamagedFileError`` naming it (never silently
    replaced)."""
    return read_json(run_dir / STATUS_FILE) or {"status": "new", "steps": {}}


def update_status(run_dir: Path, step: str, status: str, **details: Any) -> dict[str, Any]:
    """Record a step's state in ``run_dir/status.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    state = read_status(run_dir)
    state["steps"].setdefault(step, {}).update({"status": status, "time": time.time(), **details})
    if status in ("failed", "running"):
        state["status"] = status
    elif step == "pipeline" and status == "completed":  # every step done
        state["status"] = "completed"
        state.pop("failed_step", None)  # left by an earlier attempt that --resume completed
        state.pop("reason", None)
    if status == "failed":
        state["failed_step"], state["reason"] = step, details.get("reason", "")
    return _write(run_dir, state)


def update_run(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Set top-level fields of ``status.json`` (run id, name, creation time, resumes)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return _write(run_dir, read_status(run_dir) | fields)


def _write(run_dir: Path, state: dict[str, Any]) -> dict[str, Any]:
    write_atomically(run_dir / STATUS_FILE, json.dumps(state, indent=2) + "\n")
    return state


def save_traceback(step_dir: Path, err: BaseException) -> Path:
    """The full traceback of a failed step, kept in its folder (``status.json`` names the file)."""
    step_dir.mkdir(parents=True, exist_ok=True)
    path = step_dir / "traceback.txt"
    path.write_text("".join(traceback.format_exception(err)), encoding="utf-8")
    return path
