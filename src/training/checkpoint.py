"""Crash-safe checkpoints: atomic writes, ``weights_only`` loads, a digest of the tensors, fallback to
the last good file.

A checkpoint is a plain dict of tensors and Python scalars so that ``torch.load(weights_only=True)``
can read it: no pickled classes, nothing executed on load. It carries the SHA-256 of its tensors
(``TENSOR_DIGEST``): PyTorch's zip reader does not check the archive's CRCs, so bytes flipped inside
a weight tensor would otherwise load without a word and the model would answer garbage.
"""

import errno
import hashlib
import os
import pickle
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from loguru import logger

from src.storage import StorageError, disk_full_message, is_disk_full

_STEP_FILE = re.compile(r"^step_(\d{8})\.pt$")
TENSOR_DIGEST = "tensor_sha256"  # the key of a checkpoint's digest of its own tensors


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, altered or not a checkpoint."""


def tensor_digest(state: Any) -> str:
    """SHA-256 over every tensor in ``state`` (nested dicts and lists), in a canonical order.

    Each tensor contributes its path of keys, dtype, shape and raw bytes, sorted by path: the
    same tensors give the same digest whatever the dict order, device or storage sharing, and a
    renamed, retyped or reshaped tensor changes it as surely as a changed byte.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(_tensors(state, ""), key=lambda item: item[0]):
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)  # bf16 has no numpy dtype
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0{data.numel()}\0".encode())
        digest.update(data.numpy())
    return digest.hexdigest()


def _tensors(value: Any, prefix: str) -> list[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        return [(prefix, value)]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return []
    # repr keeps the int key 0 of an optimizer's state apart from a string key "0"
    return [pair for key, item in items for pair in _tensors(item, f"{prefix}/{key!r}")]


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """``atomic_torch_save`` of ``state`` with the digest of its tensors under ``TENSOR_DIGEST``."""
    atomic_torch_save({**state, TENSOR_DIGEST: tensor_digest(state)}, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    ``os.replace`` is atomic on POSIX, so a reader (or a crash) sees either the old file or the
    complete new one, never a half-written file. A full disk raises ``StorageError`` "disk full"
    naming ``path`` (PyTorch's zip writer says only "enforce fail at inline_container.cc").
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        # asked before the partial file frees space
        full = isinstance(err, Exception) and is_disk_full(err, path)
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise StorageError(disk_full_message(path, "checkpoint"), errno.ENOSPC, path) from err
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
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        # PyTorch's own message advises re-running with weights_only=False: for a file of unknown origin
        # that means running whatever code it holds, so its text is not passed on
        raise CheckpointError(f"not a checkpoint (or damaged): {path}") from err
    except Exception as err:  # truncated zip, wrong magic number ...
        raise CheckpointError(f"not a checkpoint (or damaged): {path} ({_cause(err)})") from err
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise CheckpointError(f"{path} is not a training checkpoint (expected keys 'model' and 'step')")
    if not mmap:  # a mapped read wants the scalars, not every byte of the weights
        verify_digest(state, path)
    return state


def verify_digest(state: dict[str, Any], path: Path) -> None:
    """Refuse ``state`` if its tensors are not the ones it was saved with; warn if it predates digests."""
    recorded = state.get(TENSOR_DIGEST)
    if recorded is None:
        logger.warning("{} carries no digest of its tensors (written before checkpoints had one): "
                       "loaded without an integrity check", path)
        return
    actual = tensor_digest(state)
    if actual != recorded:
        raise CheckpointError(f"checkpoint {path} is damaged: the SHA-256 of its tensors is "
                              f"{actual[:16]}..., the file records {str(recorded)[:16]}...; it changed after "
                              "it was written")


def _cause(err: Exception) -> str:
    """The error's type and first line, unless that line carries PyTorch's advice to drop ``weights_only``."""
    line = (str(err).strip().splitlines() or [""])[0]
    return (type(err).__name__ if not line or "weights_only" in line.lower()
            else f"{type(err).__name__}: {line}")


@dataclass
class CheckpointManager:
    """Numbered checkpoints ``step_XXXXXXXX.pt`` in one folder, plus ``best.pt``."""

    directory: Path
    keep: int = 2

    def path_for(self, step: int) -> Path:
        return self.directory / f"step_{step:08d}.pt"

    def save(self, state: dict[str, Any]) -> Path:
        path = self.path_for(int(state["step"]))
        save_checkpoint(state, path)
        self._prune()
        return path

    def save_best(self, state: dict[str, Any]) -> Path:
        path = self.directory / "best.pt"
        save_checkpoint(state, path)
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
