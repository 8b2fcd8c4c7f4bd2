"""Filesystem failures a user can fix are one line naming the path, found before any work is done.

Tests here run as root, which ignores permission bits, so a read-only folder cannot be made with
chmod: the write is made to fail as the kernel fails it (EACCES, EROFS, ENOSPC) by patching the
probe's own calls. A file in the way of a folder needs no patching.
"""

import errno
import os
import re
import tempfile
from pathlib import Path

import pytest
import torch

from src.storage import StorageError, ensure_writable, is_disk_full, raise_if_disk_full, user_line


def test_a_folder_under_a_regular_file_is_refused_naming_the_file(tmp_path):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError) as caught:
        ensure_writable(blocker / "runs", "output_dir")
    assert str(caught.value) == f"output_dir {blocker / 'runs'} cannot be a folder: {blocker} is a file"
    assert caught.value.errno == errno.ENOTDIR


@pytest.mark.parametrize(("code", "expected"), [
    (errno.EACCES, "is not writable (permission denied)"),
    (errno.EROFS, "is on a read-only filesystem"),
])
def test_a_folder_that_refuses_writes_is_named_before_any_work(tmp_path, monkeypatch, code, expected):
    folder = tmp_path / "runs"
    folder.mkdir()
    if code == errno.EACCES and os.geteuid() != 0:
        folder.chmod(0o555)  # a real read-only folder where permissions bind (not as root)
    else:
        def refuse(*args, dir=None, **kwargs):
            raise OSError(code, os.strerror(code), str(dir))
        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    try:
        with pytest.raises(StorageError, match=re.escape(f"output_dir {folder} {expected}")):
            ensure_writable(folder, "output_dir")
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_a_folder_the_kernel_refuses_even_to_root_is_named_without_any_patching():
    """sysfs takes no new folders, not even from root: a real refusal where chmod cannot make one."""
    folder = Path("/sys/stepwise-transformers-runs")
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no sysfs at /sys on this machine")
    with pytest.raises(StorageError) as caught:
        ensure_writable(folder, "output_dir")
    assert str(caught.value) in (
        f"output_dir {folder} is not writable (permission denied): choose a writable folder",
        f"output_dir {folder} is on a read-only filesystem: choose a writable folder")


def test_a_full_disk_is_found_at_the_start_by_writing_data_not_only_a_name(tmp_path, monkeypatch):
    def no_space(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", no_space)  # creating the probe file works; its first block does not
    with pytest.raises(StorageError, match=re.escape(f"disk full: cannot write output_dir {tmp_path} (")):
        ensure_writable(tmp_path, "output_dir")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []  # the probe is removed


def test_pytorch_s_write_failure_is_recognised_as_a_full_disk_only_when_it_is_one(tmp_path):
    from tests.training.damage import FullDiskFile

    with open(tmp_path / "x.pt", "wb") as f, pytest.raises(RuntimeError, match="inline_container") as caught:
        torch.save({"w": torch.zeros(10_000)}, FullDiskFile(f, room=1000))
    assert is_disk_full(caught.value)
    with pytest.raises(StorageError,
                       match=re.escape(f"disk full: cannot write checkpoint {tmp_path / 'x.pt'} (")):
        raise_if_disk_full(caught.value, tmp_path / "x.pt", "checkpoint")
    # the same RuntimeError without the OSError behind it, on a disk with room: not a full disk
    assert not is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos"),
                            tmp_path)


def test_only_filesystem_errors_the_user_can_fix_become_one_line():
    assert user_line(OSError(errno.ENOSPC, "No space left on device", "/data/x")).startswith(
        "disk full: cannot write file /data/x (")
    arrow = OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")  # errno unset
    assert user_line(arrow) == "disk full: No space left on device"
    assert user_line(PermissionError(errno.EACCES, "Permission denied",
                                     "/data/x")) == "/data/x: Permission denied"
    # a bug or a server: a traceback
    assert user_line(OSError(errno.ECONNREFUSED, "Connection refused")) is None
    assert user_line(RuntimeError("boom")) is None


def test_a_full_disk_that_also_stops_the_failure_being_recorded_is_still_named_by_its_first_cause(tmp_path):
    try:
        try:
            raise StorageError(f"disk full: cannot write checkpoint {tmp_path / 'best.pt'}", errno.ENOSPC,
                               tmp_path / "best.pt")
        except StorageError:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "traceback.txt"))
    except OSError as err:
        assert user_line(err) == f"disk full: cannot write checkpoint {tmp_path / 'best.pt'}"
