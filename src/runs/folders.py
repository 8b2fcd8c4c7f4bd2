"""One folder per run: ``runs/<run_name>-<YYYYmmdd-HHMMSS>[-N]``, and ``runs/latest`` pointing at the newest.

A new ``train`` always gets a new folder, as an experiment tracker gives each run a new task;
``--resume [RUN]`` and the commands that read a run (``translate``, ``evaluate``, ``runs``,
``import-offline``) find it again by path, run id, run name (its newest run) or ``latest``.
"""

import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from src.runs.files import DamagedFileError, read_json
from src.runs.status import STATUS_FILE

LATEST = "latest"
CONFIG_FILE = "config.json"
BEST_CHECKPOINT = Path("train") / "checkpoints" / "best.pt"
RUN_ID_SUFFIX = re.compile(r"-\d{8}-\d{6}(-\d+)?$")  # what new_run_id appends to the run name


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


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """Process ``pid``'s state letter and ``<boot id>:<start time in clock ticks>``; None where ``/proc``
    cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name in () may hold spaces
    return fields[0], f"{boot}:{fields[19]}"  # fields 3 (state) and 22 (starttime) of proc(5)


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as ``<boot id>:<clock ticks since boot>``; None where ``/proc`` cannot
    tell.

    A pid alone does not name a process: after a ``kill -9`` the kernel hands the same number to the
    next process, so a dead run would look alive. The pair (pid, start time) names one process.
    """
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def owner() -> dict[str, Any]:
    """Who is running a run now: ``status.json`` keeps it so a second process can tell a live run from a dead
    one."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": process_start(os.getpid())}


def owner_alive(status: dict[str, Any]) -> bool | None:
    """Whether the process recorded as running this run still runs: None when this machine cannot tell
    (the run is not running, has no owner, or runs on another host)."""
    who = status.get("owner") or {}
    if status.get("status") != "running" or who.get("host") != socket.gethostname() or not who.get("pid"):
        return None
    pid = int(who["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        pass
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state in ("Z", "X"):  # killed, not yet reaped by its parent: it runs nothing more
        return False
    return not (who.get("started") and started != who["started"])  # else: the pid was reused


def live_owner(status: dict[str, Any]) -> str | None:
    """``"pid N on HOST"`` if another process on this machine is running this run now, else None."""
    who = status.get("owner") or {}
    if not owner_alive(status) or int(who["pid"]) == os.getpid():
        return None
    return f"pid {who['pid']} on {who['host']}"


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / STATUS_FILE).is_file()


@dataclass(frozen=True)
class RunInfo:
    """What ``runs list`` shows of one run folder; ``damaged`` says why its ``status.json`` could not be
    read."""

    path: Path
    status: dict[str, Any]
    damaged: str | None = None

    @classmethod
    def load(cls, path: Path) -> "RunInfo":
        try:
            return cls(path, read_json(path / STATUS_FILE))
        except DamagedFileError as err:
            return cls(path, {}, damaged=str(err))

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def run_name(self) -> str:
        if self.damaged:  # the name the folder was made from: ``<run_name>-<YYYYmmdd-HHMMSS>[-N]``
            return RUN_ID_SUFFIX.sub("", self.path.name)
        return self.status.get("run_name") or self.path.name

    @property
    def created(self) -> float:
        if self.status.get("created"):
            return float(self.status["created"])
        stamp = RUN_ID_SUFFIX.search(self.path.name)  # a damaged status: the time its folder was named after
        try:
            return time.mktime(time.strptime(stamp.group(0)[1:16],
                                             "%Y%m%d-%H%M%S")) if stamp else self.path.stat().st_mtime
        except ValueError:
            return self.path.stat().st_mtime

    @property
    def config(self) -> dict[str, Any]:
        return read_json(self.path / CONFIG_FILE)

    @property
    def metrics(self) -> dict[str, Any]:
        return read_json(self.path / "evaluate" / "metrics.json")

    @property
    def state(self) -> str:
        """``completed``, ``failed``, ``running``, ``interrupted`` (its process is gone, or a step was
        stopped by Ctrl-C or a signal) or ``damaged``."""
        if self.damaged:
            return "damaged"
        status = self.status.get("status", "?")
        if status == "running" and owner_alive(self.status) is False:
            return "interrupted"
        failed = self.status.get("steps", {}).get(self.status.get("failed_step") or "", {})
        return "interrupted" if status == "failed" and failed.get("stopped") else status

    @property
    def step(self) -> str | None:
        """The step a failed run failed in, or a running or interrupted run was in."""
        if self.status.get("status") == "failed":  # failed, or interrupted by a stop request
            return self.status.get("failed_step")
        running = [name for name, step in self.status.get("steps", {}).items()
                   if step.get("status") == "running" and name != "pipeline"]
        return running[-1] if running else None

    @property
    def checkpoint(self) -> Path | None:
        best = self.path / BEST_CHECKPOINT
        return best if best.is_file() else None

    def describe(self) -> str:
        """``failed in data_prep``, ``interrupted in train``, ``running``, ``PATH is damaged (...)``: for
        one-line messages."""
        if self.damaged:
            return self.damaged
        return f"{self.state} in {self.step}" if self.step else self.state



def list_runs(output_dir: str | Path = "runs") -> list[RunInfo]:
    """Every run folder under ``output_dir``, oldest first (``latest`` is a pointer, not a run).

    A run whose ``status.json`` does not parse is listed as damaged; it never hides the others.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    runs = [RunInfo.load(p) for p in output_dir.iterdir() if not p.is_symlink() and is_run_dir(p)]
    return sorted(runs, key=lambda r: (r.created, r.run_id))


def _named_run(ref: str, output_dir: Path) -> Path | None:
    """The folder ``ref`` names as a path or a run id (the ``latest`` link included), else None."""
    for candidate in (Path(ref), output_dir / ref):
        if is_run_dir(candidate):
            return candidate.resolve() if candidate.is_symlink() else candidate
    return None


def _not_found(ref: str, output_dir: Path, runs: list[RunInfo]) -> RunNotFoundError:
    known = ", ".join(r.run_id for r in runs[-10:]) or "none"
    return RunNotFoundError(
        f"no run {ref!r}: expected a run folder, a run id or run name under {output_dir}/, or 'latest' "
        f"(runs there: {known}; runs trained with another output_dir: pass --runs-dir DIR)"
    )


def resolve_run(ref: str | Path | None, output_dir: str | Path = "runs") -> Path:
    """A run folder from a path, a run id under ``output_dir``, a run name (its newest run) or
    ``latest``/None.

    The newest run whatever its state: what ``--resume``, ``report`` and ``runs compare`` mean.
    Commands that need a trained model use ``resolve_checkpoint``, which skips unfinished runs.
    """
    output_dir = Path(output_dir)
    ref = LATEST if ref is None else str(ref)
    if (found := _named_run(ref, output_dir)) is not None:
        return found
    runs = list_runs(output_dir)
    named = [r for r in runs if r.run_name == ref]
    if named:
        return named[-1].path
    if ref == LATEST and runs:  # the link is missing or points at a deleted run: the newest left
        return runs[-1].path
    raise _not_found(ref, output_dir, runs)


def resolve_trained_run(ref: str | Path | None, output_dir: str | Path = "runs") -> RunInfo:
    """The run an inference command uses: a run named by path or id as it is; a run name or ``latest``
    means the newest COMPLETED run with a checkpoint, and one log line names any newer run passed over.

    A newer run that failed in data_prep or is still training has no model to offer; answering
    "no checkpoint yet" while a completed run of the same name sits beside it would send the user
    looking for a problem that is not there.
    """
    output_dir = Path(output_dir)
    ref = LATEST if ref is None else str(ref)
    is_latest_link = Path(ref).name == LATEST and Path(ref).is_symlink()
    if ref != LATEST and not is_latest_link and (found := _named_run(ref, output_dir)) is not None:
        return RunInfo.load(found)
    folder = Path(ref).parent if is_latest_link else output_dir
    runs = list_runs(folder)
    candidates = runs if ref == LATEST or is_latest_link else [r for r in runs if r.run_name == ref]
    if not candidates:
        raise _not_found(ref, folder, runs)
    trained = [r for r in candidates if r.state == "completed" and r.checkpoint is not None]
    if not trained:
        tried = ", ".join(f"{r.run_id} ({r.describe()})" for r in candidates[-5:])
        raise RunNotFoundError(f"no completed run {ref!r} with a checkpoint under {folder}/ (newest: "
                               f"{tried}); name an unfinished run by its id to use its best checkpoint "
                               "so far")
    chosen = trained[-1]
    if newer := candidates[candidates.index(chosen) + 1:]:
        logger.info("{}: using {}, the newest completed run; passed over the newer {}", ref, chosen.run_id,
                    ", ".join(f"{r.run_id} ({r.describe()})" for r in newer))
    return chosen


def resolve_checkpoint(ref: str | Path, output_dir: str | Path = "runs") -> Path:
    """A checkpoint file given directly, or the best checkpoint of a run (see ``resolve_trained_run``)."""
    path = Path(ref)
    if path.is_file():
        return path
    if path.suffix == ".pt":
        raise RunNotFoundError(f"checkpoint file not found: {path}")
    run = resolve_trained_run(ref, output_dir)
    if run.checkpoint is None:
        raise RunNotFoundError(f"run {run.path} has no checkpoint ({run.path / BEST_CHECKPOINT} does not "
                               f"exist; the run is {run.describe()})")
    if run.state != "completed":  # named by its id: the user asked for this one
        logger.warning("{} is {}: using its best checkpoint so far", run.run_id, run.describe())
    return run.checkpoint


def run_dir_of_checkpoint(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint sits in (``<run>/train/checkpoints/x.pt``), or None for a file moved
    elsewhere."""
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
