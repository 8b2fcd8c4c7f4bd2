"""Crash-safe checkpoints: atomic writes, ``weights_only`` loads, fallback to the last good file.

A checkpoint is a plain dict of tensors and Python scalars so that ``torch.load(weights_only=True)``
can read it: no pickled classes, nothing executed on load.
"""

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from loguru import logger

_STEP_FILE = re.compile(r"^step_(\d{8})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or not a checkpoint."""


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    ``os.replace`` is atomic on POSIX, so a reader (or a crash) sees either the old file or the
    complete new one, never a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Load one checkpoint safely; raise ``CheckpointError`` naming the file and the cause.

    Args:
        path: a ``step_*.pt`` or ``best.pt`` file.
        mmap: map the file instead of reading it: tensors are read only when touched (a reader that
            wants the scalars and histories, not the weights).
    """
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # truncated zip, bad pickle, wrong magic number ...
        raise CheckpointError(f"checkpoint {path} is damaged or truncated ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise CheckpointError(f"{path} is not a training checkpoint (expected keys 'model' and 'step')")
    return state


@dataclass
class CheckpointManager:
    """Numbered checkpoints ``step_XXXXXXXX.pt`` in one folder, plus ``best.pt``."""

    directory: Path
    keep: int = 2

    def path_for(self, step: int) -> Path:
        return self.directory / f"step_{step:08d}.pt"

    def save(self, state: dict[str, Any]) -> Path:
        path = self.path_for(int(state["step"]))
        atomic_torch_save(state, path)
        self._prune()
        return path

    def save_best(self, state: dict[str, Any]) -> Path:
        path = self.directory / "best.pt"
        atomic_torch_save(state, path)
        return path

    def step_files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        files = [p for p in self.directory.iterdir() if _STEP_FILE.match(p.name)]
        return sorted(files, key=lambda p: int(_STEP_FILE.match(p.name).group(1)))

    def load_latest(self) -> dict[str, Any] | None:
        """The newest checkpoint that loads; damaged ones are reported and skipped."""
        for path in reversed(self.step_files()):
            try:
                state = load_checkpoint(path)
            except CheckpointError as err:
                logger.error(f"{err}; falling back to the previous checkpoint")
                continue
            logger.info(f"resuming from {path} (step {state['step']})")
            return state
        return None

    def _prune(self) -> None:
        files = self.step_files()
        for old in files[: max(len(files) - self.keep, 0)]:
            old.unlink(missing_ok=True)
