"""Text files read strictly as UTF-8: a file that is not names itself and the line that is not."""

from pathlib import Path


class NotUtf8Error(ValueError):
    """A file that should be UTF-8 text is not; the message names the file and the line."""


def read_utf8(path: str | Path) -> str:
    """The text of ``path``, a leading byte-order mark dropped.

    Raises:
        NotUtf8Error: at the first byte sequence that is not UTF-8, naming the file, the 1-based line,
            the bytes and where in the line they are (a latin-1 ``é`` is the single byte e9).
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line = data.count(b"\n", 0, err.start) + 1
        raise NotUtf8Error(
            f"{path}: line {line} is not UTF-8 (byte {data[err.start:err.end].hex(' ')} at byte "
            f"{err.start - line_start + 1} of the line): expected UTF-8 text; convert the file, e.g. "
            f"iconv -f latin1 -t utf-8"
        ) from None
