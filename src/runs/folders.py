"""One folder per run: ``runs/<run_name>-<YYYYmmdd-HHMMSS>[-N]``, and ``runs/latest`` pointing at the newest.

A new ``train`` always gets a new folder, as an experiment tracker gives each run a new task;
``--resume [RUN]`` and the commands that read a run (``translate``, ``evaluate``, ``runs``,
``import-offline``) find it again by path, run id, run name (its newest run) or ``latest``.
"""

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LATEST = "latest"
STATUS_FILE = "status.json"
CONFIG_FILE = "config.json"
BEST_CHECKPOINT = Path("train") / "checkpoints" / "best.pt"


class RunNotFoundError(FileNotFoundError):
    """No run matches what the user named; the message lists the runs that exist."""


def new_run_id(run_name: str, now: float | None = None) -> str:
    """``<run_name>-<YYYYmmdd-HHMMSS>`` in local time."""
    return f"{run_name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"


def new_run_dir(output_dir: str | Path, run_name: str, now: float | None = None) -> Path:
    """Create and return a fresh, empty run folder; a second run in the same second gets ``-2``, ``-3`` ...

    ``mkdir`` without ``exist_ok`` is the lock: two processes starting together never share a folder.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    base = new_run_id(run_name, now)
    for counter in range(1, 1000):
        path = output_dir / (base if counter == 1 else f"{base}-{counter}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"could not create a new run folder for {run_name!r} in {output_dir}")


def point_latest(run_dir: Path) -> None:
    """Make ``<output_dir>/latest`` a relative symlink to ``run_dir`` (replaced atomically)."""
    link = run_dir.parent / LATEST
    tmp = run_dir.parent / f".{LATEST}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name, target_is_directory=True)
    os.replace(tmp, link)


def owner() -> dict[str, Any]:
    """Who is running a run now: ``status.json`` keeps it so a second process can tell a live run from a dead one."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def live_owner(status: dict[str, Any]) -> str | None:
    """``"pid N on HOST"`` if the process running this run is alive on this machine, else None."""
    who = status.get("owner") or {}
    if status.get("status") != "running" or who.get("host") != socket.gethostname() or not who.get("pid"):
        return None
    if int(who["pid"]) == os.getpid():
        return None
    try:
        os.kill(int(who["pid"]), 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, someone else's
        pass
    return f"pid {who['pid']} on {who['host']}"


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / STATUS_FILE).is_file()


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


@dataclass(frozen=True)
class RunInfo:
    """What ``runs list`` shows of one run folder."""

    path: Path
    status: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def run_name(self) -> str:
        return self.status.get("run_name") or self.path.name

    @property
    def created(self) -> float:
        return float(self.status.get("created") or self.path.stat().st_mtime)

    @property
    def config(self) -> dict[str, Any]:
        return read_json(self.path / CONFIG_FILE)

    @property
    def metrics(self) -> dict[str, Any]:
        return read_json(self.path / "evaluate" / "metrics.json")


def list_runs(output_dir: str | Path = "runs") -> list[RunInfo]:
    """Every run folder under ``output_dir``, oldest first (``latest`` is a pointer, not a run)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    runs = [RunInfo(p, read_json(p / STATUS_FILE)) for p in output_dir.iterdir()
            if not p.is_symlink() and is_run_dir(p)]
    return sorted(runs, key=lambda r: (r.created, r.run_id))


def resolve_run(ref: str | Path | None, output_dir: str | Path = "runs") -> Path:
    """A run folder from a path, a run id under ``output_dir``, a run name (its newest run) or ``latest``/None."""
    output_dir = Path(output_dir)
    ref = LATEST if ref is None else str(ref)
    for candidate in (Path(ref), output_dir / ref):
        if is_run_dir(candidate):
            return candidate.resolve() if candidate.is_symlink() else candidate
    runs = list_runs(output_dir)
    named = [r for r in runs if r.run_name == ref]
    if named:
        return named[-1].path
    if ref == LATEST and runs:  # the link is missing or points at a deleted run: the newest left
        return runs[-1].path
    known = ", ".join(r.run_id for r in runs[-10:]) or "none"
    raise RunNotFoundError(
        f"no run {ref!r}: expected a run folder, a run id or run name under {output_dir}/, or 'latest' "
        f"(runs there: {known}; runs trained with another output_dir: pass --runs-dir DIR)"
    )


def resolve_checkpoint(ref: str | Path, output_dir: str | Path = "runs") -> Path:
    """A checkpoint file given directly, or the best checkpoint of a run (see ``resolve_run``)."""
    path = Path(ref)
    if path.is_file():
        return path
    if path.suffix == ".pt":
        raise RunNotFoundError(f"checkpoint file not found: {path}")
    run_dir = resolve_run(ref, output_dir)
    best = run_dir / BEST_CHECKPOINT
    if not best.is_file():
        raise RunNotFoundError(f"run {run_dir} has no checkpoint yet ({best} does not exist): did training start?")
    return best


def run_dir_of_checkpoint(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint sits in (``<run>/train/checkpoints/x.pt``), or None for a file moved elsewhere."""
    candidate = Path(checkpoint).resolve().parents[2] if len(Path(checkpoint).resolve().parents) > 2 else None
    return candidate if candidate is not None and is_run_dir(candidate) else None


TEST_SOURCES = Path("data_prep") / "dataset"  # the prepared splits: raw texts, every text family


def run_test_sentences(run_dir: Path | None, n: int) -> tuple[list[str], Path | None]:
    """The first ``n`` non-blank source texts of a run's test split, and the folder they came from.

    One reader for "a run's test sentences" (the ONNX bench, the serving bench): the run's prepared
    dataset (``data_prep/dataset``), the rows the evaluate step encodes, column ``src`` (translation)
    or ``text`` (classification, language modelling). ``([], None)`` when ``run_dir`` is None or
    holds no such split; the caller then says which sentences it used instead.
    """
    folder = run_dir / TEST_SOURCES if run_dir is not None else None
    if folder is None or not folder.is_dir():
        return [], None
    from datasets import load_from_disk

    splits = load_from_disk(str(folder))
    if "test" not in splits:
        return [], None
    test = splits["test"]
    column = next((c for c in ("src", "text") if c in test.column_names), None)
    if column is None:
        return [], None
    texts = [t for t in test.select(range(min(len(test), 4 * n)))[column] if isinstance(t, str) and t.strip()]
    return texts[:n], folder
