"""Read a ClearML offline session (zip or folder) without ClearML: what did a step record?

Layout written by clearml 2.1.12 (checked by running offline tasks; paths relative to the session):
  task.json       the task: name, type, project_name, hyperparams, execution.artifacts (absolute
                  ``uri`` under ``offline_folder``), offline_output_models, script
  metrics.jsonl   one JSON list of events per line: ``training_stats_scalar`` (metric, variant,
                  iter, value), ``training_debug_image`` (``key`` relative to data/), ``plot`` (tables)
  log.jsonl       console output, one JSON list of ``log`` events per line
  data/<project>/<task name>.<task id>/metrics/<title>/<series>/*.jpeg   debug images
  data/<project>/<task name>.<task id>/artifacts/<name>/<file>            artifacts
  models/<weights file name>                                               OutputModel weights
"""

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASK_FILE = "task.json"


@dataclass(frozen=True)
class SessionImage:
    title: str
    series: str
    iteration: int
    file: str  # relative to the session root, e.g. "data/p/t.offline-1/metrics/attn/h0/attn_h0_00000000.jpeg"


@dataclass(frozen=True)
class SessionModel:
    name: str
    framework: str | None
    tags: list[str]
    config: dict[str, Any] | None
    weights_file: str | None  # relative to the session root, e.g. "models/best.pt"


@dataclass
class OfflineSession:
    """What one offline session holds. Files are named relative to ``root``; read them with ``read_bytes``."""

    root: Path  # the zip file or the session folder
    task: dict[str, Any]
    scalars: dict[tuple[str, str], list[tuple[int, float]]] = field(default_factory=dict)
    images: list[SessionImage] = field(default_factory=list)
    # tables and plots: (title, series, iteration)
    plots: list[tuple[str, str, int]] = field(default_factory=list)
    artifacts: dict[str, str | None] = field(default_factory=dict)  # name -> file (None: not a file)
    models: list[SessionModel] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    @property
    def task_id(self) -> str:
        return self.task["id"]

    @property
    def hyperparameters(self) -> dict[str, dict[str, str]]:
        """``{section: {flat/name: value as string}}``, as ClearML stores them."""
        return {
            section: {name: p.get("value", "") for name, p in params.items()}
            for section, params in (self.task.get("hyperparams") or {}).items()
        }

    def files(self) -> list[str]:
        if self.root.is_dir():
            return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        with zipfile.ZipFile(self.root) as zf:
            return sorted(n for n in zf.namelist() if not n.endswith("/"))

    def read_bytes(self, relative_path: str) -> bytes:
        if self.root.is_dir():
            return (self.root / relative_path).read_bytes()
        with zipfile.ZipFile(self.root) as zf:
            return zf.read(relative_path)


def is_offline_session(path: Path) -> bool:
    """A folder or zip with ``task.json`` at its root."""
    path = Path(path)
    if path.is_dir():
        return (path / TASK_FILE).is_file()
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return TASK_FILE in zf.namelist()
    return False


def read_offline_session(path: str | Path) -> OfflineSession:
    """Parse a session zip (as ``Tracker.close()`` returns) or an unzipped session folder."""
    root = Path(path)
    if not is_offline_session(root):
        raise ValueError(
            f"{root} is not a ClearML offline session (expected a zip or folder with {TASK_FILE})"
        )
    session = OfflineSession(root=root, task=json.loads(_read_text(root, TASK_FILE)))
    offline_folder = session.task.get("offline_folder", "").rstrip("/") + "/"
    for event in _events(root, "metrics.jsonl"):
        kind, title, series = event.get("type"), event.get("metric", ""), event.get("variant", "")
        if kind == "training_stats_scalar":
            session.scalars.setdefault((title, series), []).append(
                (int(event["iter"]), float(event["value"]))
            )
        elif kind == "training_debug_image":
            session.images.append(
                SessionImage(title, series, int(event.get("iter", 0)), f"data/{event['key']}")
            )
        elif kind == "plot":
            session.plots.append((title, series, int(event.get("iter", 0))))
    session.log = [event.get("msg", "") for event in _events(root, "log.jsonl")]
    for artifact in (session.task.get("execution") or {}).get("artifacts") or []:
        session.artifacts[artifact["key"]] = _inside(artifact.get("uri"), offline_folder)
    for model in session.task.get("offline_output_models") or []:
        init, weights = model.get("init", {}), model.get("weights", {})
        session.models.append(
            SessionModel(
                name=init.get("name"),
                framework=init.get("framework"),
                tags=list(init.get("tags") or []),
                config=init.get("config_dict"),
                weights_file=_inside(weights.get("weights_filename"), offline_folder),
            )
        )
    return session


def _inside(path: str | None, offline_folder: str) -> str | None:
    """A path recorded under the session's original folder, made relative to the session root."""
    return path[len(offline_folder) :] if path and path.startswith(offline_folder) else None


def _read_text(root: Path, name: str) -> str | None:
    if root.is_dir():
        path = root / name
        return path.read_text(encoding="utf-8") if path.is_file() else None
    with zipfile.ZipFile(root) as zf:
        return zf.read(name).decode("utf-8") if name in zf.namelist() else None


def _events(root: Path, name: str) -> Iterator[dict[str, Any]]:
    """Events of a ``.jsonl`` file whose lines are JSON lists (a batch each) or single objects."""
    for line in (_read_text(root, name) or "").splitlines():
        if not line.strip():
            continue
        batch = json.loads(line)
        yield from batch if isinstance(batch, list) else [batch]
