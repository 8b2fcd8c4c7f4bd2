"""The search space: config keys with ranges, read from YAML and checked against the config schema.

A space file maps dotted config keys onto ranges::

    training.lr: {low: 1.0e-4, high: 3.0e-3, log: true}
    model.dropout: {low: 0.0, high: 0.3}
    model.n_heads: {choices: [2, 4]}
    training.warmup_steps: {low: 10, high: 200, int: true}

A key must name a field of ``ExperimentConfig`` (``section.field``); the bounds and every choice
must be values the schema accepts together with the base config (so ``model.n_heads`` choices that
do not divide ``model.d_model`` are refused before any trial runs).
"""

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from src.config import ConfigError, FrozenConfig, config_to_dict
from src.experiment import ExperimentConfig, validate_config
from src.config.files import read_config_text

DEFAULT_SPACE = Path(__file__).resolve().parents[2] / "config" / "sweep_space.yaml"
_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


class ParamRange(BaseModel):
    """One key's range: ``low``/``high`` (``log``, ``int``, ``step``) or ``choices``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = Field(False, alias="int")
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "ParamRange":
        ranged = self.low is not None or self.high is not None
        if self.choices is not None:
            if ranged or self.log or self.integer or self.step is not None:
                raise ValueError("give either choices or low/high (with log, int, step), not both")
            if not self.choices:
                raise ValueError("choices is empty (expected at least one value)")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"expected both low and high (or choices), got low={self.low}, high={self.high}")
        if self.low > self.high:
            raise ValueError(f"low={self.low} is above high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low}")
        if self.log and self.step is not None:
            raise ValueError("a log range takes no step")
        if self.integer and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError(f"an int range needs whole bounds, got low={self.low}, high={self.high}")
        return self

    def values_to_check(self) -> list[Any]:
        """The values validated against the schema: each choice, or both bounds."""
        if self.choices is not None:
            return list(self.choices)
        cast = int if self.integer else float
        return [cast(self.low), cast(self.high)]

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw this key's value from an ``optuna.Trial``."""
        if self.choices is not None:
            return trial.suggest_categorical(name, self.choices)
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1),
                                     log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the range (the base config's value, enqueued as trial 0)."""
        if self.choices is not None:
            return value in self.choices
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        if self.integer and not float(value).is_integer():
            return False
        return self.low <= value <= self.high and (self.step is None or
                                                    math.isclose((value - self.low) / self.step,
                                                                 round((value - self.low) / self.step)))


class SearchSpace(FrozenConfig):
    """Every searched key with its range, in file order."""

    params: dict[str, ParamRange]

    @property
    def keys(self) -> list[str]:
        return list(self.params)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One trial's values, ``{"training.lr": 0.001, ...}``."""
        return {key: rng.suggest(trial, key) for key, rng in self.params.items()}

    def base_values(self, cfg: ExperimentConfig) -> dict[str, Any] | None:
        """The base config's values of the searched keys, or None if one lies outside its range."""
        data = config_to_dict(cfg)
        values = {key: lookup(data, key) for key in self.params}
        return values if all(self.params[k].contains(v) for k, v in values.items()) else None


def lookup(data: dict[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        node = node[part]
    return node


def apply_params(cfg: ExperimentConfig, params: dict[str, Any],
                 **sections: dict[str, Any]) -> ExperimentConfig:
    """``cfg`` with the dotted ``params`` set (and whole-section updates, e.g. ``training={...}``),
    validated."""
    data = config_to_dict(cfg)
    for key, value in params.items():
        *path, last = key.split(".")
        node = data
        for part in path:
            node = node[part]
        node[last] = value
    for section, values in sections.items():
        data[section].update(values)
    return validate_config(data, source="trial config")


def describe_field(key: str) -> str:
    """The schema's type of a dotted key, readable: ``float, > 0``; ``one of 'cpu', 'cuda'``."""
    field = _field(key)
    annotation = field.annotation
    name = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
    bounds = [f"{op} {getattr(m, attr)}" for m in field.metadata if m is not None
              for attr, op in _BOUNDS.items() if getattr(m, attr, None) is not None]
    return ", ".join([name, *bounds])


def _field(key: str):
    """The pydantic field a dotted key names; ConfigError listing the allowed names otherwise."""
    model: type[BaseModel] = ExperimentConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        where = ".".join(parts[:i]) or "the config"
        if field is None:
            raise ConfigError(f"search space key {key!r}: {part!r} is not a key of {where} "
                              f"(allowed: {', '.join(sorted(model.model_fields))})")
        last = i == len(parts) - 1
        nested = isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        if last and nested:
            raise ConfigError(f"search space key {key!r} is a section, not a value (expected e.g. "
                              f"{key}.<field>)")
        if last:
            return field
        if not nested:
            raise ConfigError(
                f"search space key {key!r}: {'.'.join(parts[:i + 1])} is a value, not a section")
        model = field.annotation
    raise ConfigError(f"search space key {key!r} is empty")


def parse_space(data: Any, cfg: ExperimentConfig, source: str = "search space") -> SearchSpace:
    """Check a mapping of ``key: range`` against the schema and ``cfg``; ConfigError names the key."""
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{source} must be a non-empty mapping of config keys to ranges, got {data!r}")
    params: dict[str, ParamRange] = {}
    for key, spec in data.items():
        _field(str(key))
        try:
            rng = ParamRange.model_validate(spec)
        except ValidationError as err:
            reasons = "; ".join(
                e["msg"].removeprefix("Value error, ")
                + (f" at {'.'.join(map(str, e['loc']))}" if e["loc"] else "")
                for e in err.errors())
            raise ConfigError(f"{source}: {key}: {reasons} (got {spec!r})") from None
        if _field(str(key)).annotation is int and rng.choices is None and not rng.integer:
            raise ConfigError(f"{source}: {key} is an int ({describe_field(str(key))}): add `int: true` to "
                              f"its range (got {spec!r})")
        for value in rng.values_to_check():
            try:
                apply_params(cfg, {key: value})
            except ConfigError as err:
                raise ConfigError(f"{source}: {key}={value!r} is not accepted (expected "
                                  f"{describe_field(key)}):\n{str(err).partition(chr(10))[2]}") from None
        params[str(key)] = rng
    return SearchSpace(params=params)


def load_space(path: str | Path | None, cfg: ExperimentConfig) -> SearchSpace:
    """Read a space file (default ``config/sweep_space.yaml``) and check it against ``cfg``."""
    path = Path(path) if path is not None else DEFAULT_SPACE
    text = read_config_text(path, "search space file")  # missing, a folder, unreadable, not UTF-8: one line
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    return parse_space(data, cfg, source=f"search space {path}")
