"""Outputs of the data steps shared across runs: a second ``train`` on the same data prepares nothing again.

A step whose output depends only on some config sections (``StepSpec.shaped_by``: data prep on
``task`` and ``data``, tokenization also on ``tokenizer``) is cached under
``<output_dir>/.step_cache/``, keyed by

- those sections' values;
- the code that shapes the output: the hash of ``src/data`` and ``src/tasks``, so an edit to a reader or
  a tokenizer invalidates every entry;
- the raw inputs on disk that the data section names (``ding_path``, ``local_path``, ...), by size and
  modification time.

An entry names the run whose step folder made the output. A hit copies that folder into the new run
(hard links where the file system allows: the corpus is not duplicated on disk), without its ClearML
session (the step made no task in this run) and without a traceback. The new run's ``status.json``
marks the step ``"cached": true`` with the run it came from. ``train --no-cache`` runs every step.
"""

import hashlib
import json
import os
import shutil
from functools import cache
from pathlib import Path
from typing import Any

from loguru import logger

from src.runs.files import read_json, write_atomically

CACHE_DIR = ".step_cache"
CODE_PACKAGES = ("data", "tasks")  # what shapes the data steps' output besides the config
NOT_COPIED = ("clearml_offline", "traceback.txt")  # this run's own: its ClearML session, its failure
RAW_PATH_FIELDS = ("ding_path", "local_path", "imdb_path", "fashion_mnist_path")
MAX_FILES_FINGERPRINTED = 5000  # a raw-data folder larger than this is fingerprinted by its first files


@cache
def code_version() -> str:
    """The hash of the source files of ``CODE_PACKAGES`` (names and contents)."""
    src = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        for path in sorted((src / package).rglob("*.py")):
            digest.update(path.relative_to(src).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def raw_fingerprint(data: dict[str, Any]) -> list:
    """Size and modification time of every file under the raw-data paths the data section names."""
    prints = []
    for field in RAW_PATH_FIELDS:
        value = data.get(field)
        path = Path(value).expanduser() if value else None
        if path is None or not path.exists():
            prints.append([field, value, None])
            continue
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        stats = [[p.relative_to(path).as_posix() if p != path else "", p.stat().st_size, p.stat().st_mtime_ns]
                 for p in files[:MAX_FILES_FINGERPRINTED]]
        prints.append([field, str(path.resolve()), len(files), stats])
    return prints


def step_key(step: str, config: dict[str, Any], shaped_by: tuple[str, ...]) -> str:
    """The cache key of ``step`` for ``config`` (a plain dict of the whole experiment config); a dotted name
    in ``shaped_by`` is one key of a section (``model.init_from``)."""
    shaping = {name: _value(config, name) for name in shaped_by}
    material = {"step": step, "config": shaping, "code": code_version(),
                "raw": raw_fingerprint(config.get("data") or {}),
                "data_dir": os.environ.get("STEPWISE_DATA_DIR", "")}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _value(config: dict[str, Any], name: str) -> Any:
    for part in name.split("."):
        config = (config or {}).get(part)
    return config


def entry_path(output_dir: Path, step: str, key: str) -> Path:
    return Path(output_dir) / CACHE_DIR / f"{step}-{key}.json"


def lookup(output_dir: Path, step: str, key: str) -> dict[str, Any] | None:
    """The cached output of ``step`` for ``key``, if the run that made it still holds it."""
    path = entry_path(output_dir, step, key)
    entry = read_json(path)
    if not entry:
        return None
    step_dir = Path(entry["step_dir"])
    if not step_dir.is_dir():
        logger.info("step cache: {} is gone; {} runs again", step_dir, step)
        path.unlink(missing_ok=True)
        return None
    return entry


def restore(entry: dict[str, Any], run_dir: Path, step: str) -> None:
    """Copy the cached step folder into ``run_dir`` (hard links where possible)."""
    target = run_dir / step
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(entry["step_dir"], target, copy_function=_link_or_copy,
                    ignore=shutil.ignore_patterns(*NOT_COPIED))


def remember(output_dir: Path, step: str, key: str, run_dir: Path, output: dict[str, Any]) -> None:
    """Record that ``run_dir``'s ``step`` folder holds the output for ``key``."""
    path = entry_path(output_dir, step, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"step": step, "key": key, "run_id": run_dir.name, "step_dir": str((run_dir / step).resolve()),
             "output": output}
    write_atomically(path, json.dumps(entry, indent=2, default=str) + "\n")


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)
