"""Damage a checkpoint the way a bad disk or a careless edit does (bytes flipped inside a tensor), and
a disk that fills while a checkpoint is written."""

import errno
import os
import struct
import zipfile
from pathlib import Path


def flip_tensor_bytes(path: Path, count: int = 200) -> str:
    """Invert ``count`` bytes in the middle of the largest tensor of checkpoint ``path``, in place.

    The zip archive stays valid (PyTorch stores its entries uncompressed and does not check their
    CRCs on load): only the tensor's values change. Returns the archive entry that was damaged.
    """
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    assert info.compress_type == zipfile.ZIP_STORED and info.file_size > count, info
    with path.open("r+b") as f:
        f.seek(info.header_offset + 26)  # the local header's name and extra-field lengths
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        start = info.header_offset + 30 + name_len + extra_len + (info.file_size - count) // 2
        f.seek(start)
        flipped = bytes(b ^ 0xFF for b in f.read(count))
        f.seek(start)
        f.write(flipped)
    return info.filename


class FullDiskFile:
    """A file object on a disk that fills after ``room`` bytes: later writes raise ENOSPC, as the OS does."""

    def __init__(self, file, room: int = 0) -> None:
        self.file, self.room = file, room

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if size > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= size
        return self.file.write(data)

    def __getattr__(self, name: str):
        return getattr(self.file, name)
