"""Filesystem failures a user can fix, as one line: a folder that cannot be written, a full disk.

``ensure_writable`` checks a folder before any work is done, by writing into it: permission bits
do not tell (root ignores them, a read-only mount overrides them). ``raise_if_disk_full`` turns a
write that failed for want of space into ``StorageError`` naming the path; PyTorch's own report
of it is ``RuntimeError: [enforce fail at inline_container.cc:...]``, with no word of disk space.
"""

import errno
import os
import shutil
import tempfile
from pathlib import Path

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
LOW_SPACE_BYTES = 1 << 20  # a failed write with less than this free is taken for a full disk
_NO_SPACE = os.strerror(errno.ENOSPC)  # pyarrow (datasets) raises OSError with it in the text, errno unset


class StorageError(OSError):
    """A path that cannot be written (read-only, not a folder, no permission) or a full disk.

    ``str()`` is the one line for the console; ``errno`` and ``filename`` are the OSError's.
    """

    def __init__(self, message: str, code: int, path: str | Path) -> None:
        super().__init__(code, message, str(path))
        self.message = message

    def __str__(self) -> str:
        return self.message


def ensure_writable(folder: str | Path, what: str) -> Path:
    """Create ``folder`` if needed and write a few bytes into it; ``StorageError`` naming it if that fails.

    Args:
        folder: the folder a command is about to write into.
        what: how the user knows it, for the message ("output_dir", "run folder", "export folder").
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe-")
        try:
            os.write(fd, b"probe\n")  # an empty file needs no block: a full disk refuses only data
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise StorageError(_describe(err, folder, what), err.errno or errno.EIO, folder) from err
    return folder


def _describe(err: OSError, folder: Path, what: str) -> str:
    if err.errno in DISK_FULL:
        return disk_full_message(folder, what)
    if err.errno == errno.EROFS:
        return f"{what} {folder} is on a read-only filesystem: choose a writable folder"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"{what} {folder} is not writable (permission denied): choose a writable folder"
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        return f"{what} {folder} cannot be a folder: {blocker} is a file"
    return f"{what} {folder} cannot be written: {err.strerror or err}"


def disk_full_message(path: Path, what: str) -> str:
    return f"disk full: cannot write {what} {path} ({free_space(path)} free on its filesystem)"


def free_space(path: Path) -> str:
    """The space left on ``path``'s filesystem (its nearest existing folder), human-readable."""
    for folder in (path, *path.parents):
        if folder.is_dir():
            free = float(shutil.disk_usage(folder).free)
            break
    else:
        return "unknown space"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    return "unknown space"


def is_disk_full(err: BaseException, path: Path | None = None) -> bool:
    """Whether ``err`` (or an error it was raised from) is a write that ran out of space.

    PyTorch's zip writer reports a failed write as a RuntimeError; the OSError is its context when
    it wrote to a Python file, and nowhere when it wrote by name, so then the space left on
    ``path``'s filesystem decides. pyarrow's OSError carries the cause only in its text.
    """
    if any(isinstance(e, OSError) and (e.errno in DISK_FULL or _NO_SPACE in str(e)) for e in _chain(err)):
        return True
    if path is not None and isinstance(err, RuntimeError) and "inline_container" in str(err):
        folder = next((p for p in (path, *path.parents) if p.is_dir()), None)
        return folder is not None and shutil.disk_usage(folder).free < LOW_SPACE_BYTES
    return False


def raise_if_disk_full(err: BaseException, path: Path, what: str) -> None:
    """Raise ``StorageError`` "disk full ..." naming ``path`` if ``err`` is a write that ran out of space."""
    if is_disk_full(err, path):
        raise StorageError(disk_full_message(path, what), errno.ENOSPC, path) from err


def user_line(err: BaseException) -> str | None:
    """The one line for a filesystem failure the user can fix; None for any other error (a bug: traceback)."""
    first = next((e for e in _chain(err) if isinstance(e, StorageError)), None)
    if first is not None:  # also when recording the failure hit the same full disk
        return str(first)
    if is_disk_full(err):
        filename = next((e.filename for e in _chain(err) if isinstance(e, OSError) and e.filename), None)
        return disk_full_message(Path(filename), "file") if filename else "disk full: No space left on device"
    if isinstance(err, OSError) and err.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                                                   errno.EISDIR):
        return f"{err.filename}: {err.strerror}" if err.filename else f"{err.strerror or err}"
    return None


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the errors it was raised from or during."""
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and all(current is not e for e in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
