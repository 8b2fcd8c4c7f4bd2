"""What a step recorded in its ClearML offline session, for tests: scalars, debug images, plots, console.

``src.tracking`` reads only what importing a session needs (``task.json``: the task, artifacts,
models); the events are uploaded by the SDK unread. Tests read them here to check what a step
reported. Layout written by clearml 2.1.12 (checked by running offline tasks):
  metrics.jsonl   one JSON list of events per line: ``training_stats_scalar`` (metric, variant,
                  iter, value), ``training_debug_image`` (``key`` relative to data/), ``plot`` (tables)
  log.jsonl       console output, one JSON list of ``log`` events per line
  data/<project>/<task name>.<task id>/metrics/<title>/<series>/*.jpeg   debug images
"""

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.tracking import SessionRecord, read_session_record


@dataclass(frozen=True)
class SessionImage:
    title: str
    series: str
    iteration: int
    file: str  # relative to the session root, e.g. "data/p/t.offline-1/metrics/attn/h0/attn_h0_00000000.jpeg"


@dataclass
class OfflineSession(SessionRecord):
    """What one offline session holds: its ``task.json`` record and the events the task reported."""

    scalars: dict[tuple[str, str], list[tuple[int, float]]] = field(default_factory=dict)
    images: list[SessionImage] = field(default_factory=list)
    # tables and plots: (title, series, iteration)
    plots: list[tuple[str, str, int]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

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


def read_offline_session(path: str | Path) -> OfflineSession:
    """Parse a session zip (as ``Tracker.close()`` returns) or an unzipped session folder."""
    record = read_session_record(path)
    session = OfflineSession(root=record.root, task=record.task, artifacts=record.artifacts,
                             models=record.models)
    for event in _events(session, "metrics.jsonl"):
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
    session.log = [event.get("msg", "") for event in _events(session, "log.jsonl")]
    return session


def _events(session: SessionRecord, name: str) -> Iterator[dict[str, Any]]:
    """Events of a ``.jsonl`` file whose lines are JSON lists (a batch each) or single objects."""
    for line in (session.read_text(name) or "").splitlines():
        if not line.strip():
            continue
        batch = json.loads(line)
        yield from batch if isinstance(batch, list) else [batch]
