"""Reading a configuration file: the default's place, UTF-8 text, a YAML or JSON mapping."""

import json
from pathlib import Path
from typing import Any

import yaml

from src.config.base import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def default_config_path() -> Path:
    """``config/default_config.yaml``, or ``.json`` if only that exists."""
    for suffix in (".yaml", ".yml", ".json"):
        path = CONFIG_DIR / f"default_config{suffix}"
        if path.exists():
            return path
    raise ConfigError(f"no default config found in {CONFIG_DIR} (expected default_config.yaml or .json)")


def read_config_text(path: Path, what: str = "config file") -> str:
    """The UTF-8 text of ``path``; a ConfigError naming it (and ``what`` it is) when it is missing, a
    folder, unreadable, or not UTF-8 (with the line of the first bad byte)."""
    if not path.exists():
        raise ConfigError(f"{what} not found: {path}")
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; expected a YAML or JSON file")
    try:
        raw = path.read_bytes()
    except OSError as err:  # permissions, a broken mount, a special file
        raise ConfigError(f"{what} {path} cannot be read: {err.strerror or err}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(f"{what} {path} is not UTF-8: byte {raw[err.start]:#04x} on line {line}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping; every error is a ConfigError naming the file.

    Refused: a path that is missing, a folder or unreadable; text that is not UTF-8 (the line is
    named); and a file without any setting (empty, or only comments), which would otherwise
    silently mean "the whole default config".
    """
    path = Path(path)
    text = read_config_text(path)
    try:
        data = ((json.loads(text) if path.suffix == ".json" else yaml.safe_load(text))
                if text.strip() else None)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path} is not valid {path.suffix.lstrip('.').upper()}: {err}") from err
    if data is None:
        raise ConfigError(f"config file {path} holds no settings (it is empty or only comments); "
                          "expected a mapping such as 'model: {d_model: 64}', or leave --config out for the "
                          "default")
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, got {type(data).__name__}")
    return data
