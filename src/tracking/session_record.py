"""What an offline session's ``task.json`` records, as importing it needs: the task, artifacts, models.

Layout written by clearml 2.1.12 (checked by running offline tasks; paths relative to the session):
  task.json       the task: name, type, project_name, hyperparams, execution.artifacts (absolute
                  ``uri`` under ``offline_folder``), offline_output_models, script
  data/<project>/<task name>.<task id>/artifacts/<name>/<file>            artifacts
  models/<weights file name>                                               OutputModel weights
The scalars, debug images and console log (``metrics.jsonl``, ``log.jsonl``) are read only by the
tests (tests/clearml_session.py): importing a session uploads them without looking.
"""

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASK_FILE = "task.json"


@dataclass(frozen=True)
class SessionModel:
    name: str
    framework: str | None
    tags: list[str]
    config: dict[str, Any] | None
    weights_file: str | None  # relative to the session root, e.g. "models/best.pt"


@dataclass
class SessionRecord:
    """The task, artifacts and models of one session. Files are named relative to ``root``; read them with
    ``read_bytes``."""

    root: Path  # the zip file or the session folder
    task: dict[str, Any]
    artifacts: dict[str, str | None] = field(default_factory=dict)  # name -> file (None: not a file)
    models: list[SessionModel] = field(default_factory=list)

    @property
    def task_id(self) -> str:
        return self.task["id"]

    @property
    def offline_folder(self) -> str:
        """The folder the session was written in (the prefix of every path ``task.json`` records)."""
        return self.task.get("offline_folder", "").rstrip("/") + "/"

    def read_bytes(self, relative_path: str) -> bytes:
        if self.root.is_dir():
            return (self.root / relative_path).read_bytes()
        with zipfile.ZipFile(self.root) as zf:
            return zf.read(relative_path)

    def read_text(self, name: str) -> str | None:
        """A UTF-8 file of the session, None when it has none of that name."""
        return _read_text(self.root, name)


def is_offline_session(path: Path) -> bool:
    """A folder or zip with ``task.json`` at its root."""
    path = Path(path)
    if path.is_dir():
        return (path / TASK_FILE).is_file()
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return TASK_FILE in zf.namelist()
    return False


def read_session_record(path: str | Path) -> SessionRecord:
    """Parse ``task.json`` of a session zip (as ``Tracker.close()`` returns) or an unzipped session folder."""
    root = Path(path)
    if not is_offline_session(root):
        raise ValueError(
            f"{root} is not a ClearML offline session (expected a zip or folder with {TASK_FILE})"
        )
    record = SessionRecord(root=root, task=json.loads(_read_text(root, TASK_FILE)))
    for artifact in (record.task.get("execution") or {}).get("artifacts") or []:
        record.artifacts[artifact["key"]] = inside(artifact.get("uri"), record.offline_folder)
    for model in record.task.get("offline_output_models") or []:
        init, weights = model.get("init", {}), model.get("weights", {})
        record.models.append(
            SessionModel(
                name=init.get("name"),
                framework=init.get("framework"),
                tags=list(init.get("tags") or []),
                config=init.get("config_dict"),
                weights_file=inside(weights.get("weights_filename"), record.offline_folder),
            )
        )
    return record


def inside(path: str | None, offline_folder: str) -> str | None:
    """A path recorded under the session's original folder, made relative to the session root."""
    return path[len(offline_folder) :] if path and path.startswith(offline_folder) else None


def _read_text(root: Path, name: str) -> str | None:
    if root.is_dir():
        path = root / name
        return path.read_text(encoding="utf-8") if path.is_file() else None
    with zipfile.ZipFile(root) as zf:
        return zf.read(name).decode("utf-8") if name in zf.namelist() else None
