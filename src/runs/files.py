"""A run folder's JSON files: read with their damage named, written atomically."""

import json
from pathlib import Path
from typing import Any


class DamagedFileError(ValueError):
    """A run's JSON file that does not parse; the message names the file."""


def read_json(path: Path) -> dict[str, Any]:
    """A run's JSON file (``{}`` when missing); ``DamagedFileError`` naming the file when it does not
    parse."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedFileError(f"{path} is damaged ({err})") from err
    if not isinstance(data, dict):
        raise DamagedFileError(f"{path} is damaged (expected a JSON object, found {type(data).__name__})")
    return data


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file: a kill leaves the old file or the new, never
    half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
