"""The whole experiment's configuration, loaded from ``config/*.yaml|json`` plus dotted overrides."""

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from src.config.base import ConfigError, FrozenConfig
from src.config.data import BatchingConfig, DataConfig, TokenizerConfig
from src.config.evaluation import EvaluationConfig
from src.config.files import default_config_path, read_config_file
from src.config.model import ModelConfig
from src.config.tracking import TrackingConfig
from src.config.training import TrainingConfig, check_finetune
from src.tasks import TASKS


class ExperimentConfig(FrozenConfig):
    """Every section of one run. YAML/JSON files map onto it 1:1."""

    # what is learned: translation (encoder_decoder), text classification (the classifier families),
    # language modelling (decoder_lm) or image classification (vit)
    task: Literal[tuple(TASKS)] = "translation"  # a name in src.tasks.TASKS
    run_name: str = "default"
    output_dir: str = "runs"
    # the run's own folder under output_dir: set by ``train`` (run_name plus a timestamp, see
    # src/runs/folders.py) so that two runs never share a folder; None uses run_name itself
    run_id: str | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _settings_fit_the_task(self) -> "ExperimentConfig":
        """The task's record (``src.tasks.TASKS``) says which families, sources, tokenizers and batching it
        takes."""
        task = TASKS[self.task]
        if self.model.family not in task.families:
            raise ValueError(f"task={self.task!r} needs model.family in {sorted(task.families)}, "
                             f"got {self.model.family!r}")
        if self.data.source not in task.sources:
            raise ValueError(f"task={self.task!r} reads data.source in {sorted(task.sources)}, got "
                             f"{self.data.source!r}")
        if task.batches == "items" and self.batching.batch_size is None:
            raise ValueError(f"task={self.task!r} batches fixed-size items: set batching.batch_size")
        if task.batches == "tokens" and self.batching.batch_size is not None:
            raise ValueError(f"task={self.task!r} batches by tokens (batching.max_tokens); "
                             "batching.batch_size is for language modelling and images (got "
                             f"batch_size={self.batching.batch_size})")
        if not task.windows and self.batching.block_size is not None:
            raise ValueError(f"batching.block_size is the language model's window; task={self.task!r} has "
                             "none")
        block = self.batching.block_size or self.model.max_positions
        if block > self.model.max_positions:
            raise ValueError(f"batching.block_size={block} exceeds "
                             f"model.max_positions={self.model.max_positions}: the model has no position for "
                             "the later tokens of a window")
        if self.tokenizer.kind not in task.tokenizer_kinds:
            uses = sorted(
                other.title for other in TASKS.values() if self.tokenizer.kind in other.tokenizer_kinds)
            raise ValueError(f"tokenizer.kind={self.tokenizer.kind!r} is for {' and '.join(uses)}, not "
                             f"task={self.task!r} (it takes tokenizer.kind in "
                             f"{sorted(task.tokenizer_kinds)})")
        check_finetune(self.training, self.model.family)
        task.check(self)
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / (self.run_id or self.run_name)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"model.d_model=512"`` -> (["model", "d_model"], 512). Values are parsed as YAML scalars."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted overrides set; key checking happens in validation."""
    merged = json.loads(json.dumps(data))
    for item in overrides:
        keys, value = parse_override(item)
        node = merged
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {key!r} is a value, not a section")
            node = child
        node[keys[-1]] = value
    return merged


def _string_at(data: Any, loc: tuple) -> tuple | None:
    """The part of an error's ``loc`` that leads to a string in ``data``: the whole ``loc``, or less where
    it goes on to name a union member (``("training", "grad_clip", "float")``); None if it holds none."""
    node, path = data, ()
    for part in loc:
        if isinstance(node, str):
            break
        if not isinstance(node, (dict, list)) or (isinstance(node, dict) and part not in node) or (
                isinstance(node, list) and not (isinstance(part, int) and part < len(node))):
            return None
        node, path = node[part], (*path, part)
    return path if isinstance(node, str) else None


def _parse_stringified(data: dict[str, Any], err: ValidationError) -> dict[tuple, str]:
    """Parse, in place, the values that failed as strings ("[0.9, 0.98]", "null") as YAML; the raw string of
    each value changed, by its path.

    ClearML hands parameters back as strings (clearml #1668); pydantic's lax mode already turns
    "512" into 512, but not "[0.9, 0.98]" into a tuple or "None" into None.
    """
    parsed: dict[tuple, str] = {}
    for e in err.errors():
        path = _string_at(data, e["loc"]) if e["type"] != "extra_forbidden" else None
        if path is None or path in parsed:
            continue
        node = data
        for part in path[:-1]:
            node = node[part]
        raw = node[path[-1]]
        try:
            value = yaml.safe_load(raw) if raw not in ("None", "none") else None
        except yaml.YAMLError:
            continue
        if value != raw:
            node[path[-1]] = value
            parsed[path] = raw
    return parsed


def validate_config(data: dict[str, Any], source: str = "config", model: type[FrozenConfig] | None = None):
    """Validate a mapping; the error lists each bad key with expected and actual values.

    Values that fail as strings are parsed as YAML and the mapping validated once more (ClearML's
    parameters); an error that remains then is reported alone, with the string as it was given, so a
    list that arrived as a string does not show beside the one bad key.

    ``model``: another config model than ``ExperimentConfig`` (a pipeline step's sections,
    src/steps/parameters.py)."""
    model = model or ExperimentConfig
    try:
        return model.model_validate(data)
    except ValidationError as first:
        data = json.loads(json.dumps(data))
        raw = _parse_stringified(data, first)
        if not raw:
            raise _config_error(first, source, model, raw) from None
    try:
        return model.model_validate(data)
    except ValidationError as second:
        raise _config_error(second, source, model, raw) from None


def _config_error(err: ValidationError, source: str, model: type[FrozenConfig],
                  raw: dict[tuple, str]) -> ConfigError:
    """One line per bad key; a value that was parsed from a string shows as that string."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        given = next((raw[e["loc"][:n]] for n in range(len(e["loc"]), 0, -1) if e["loc"][:n] in raw),
                     e.get("input"))
        if not e["loc"] or e["type"] == "value_error" and isinstance(e.get("input"), dict):
            # a whole-section rule
            lines.append(f"  {loc + ': ' if loc else ''}{e['msg'].removeprefix('Value error, ')}")
        elif e["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key (allowed: {', '.join(_allowed_keys(e['loc'], model))})")
        else:
            lines.append(f"  {loc}: {e['msg']} (got {given!r})")
    return ConfigError(f"invalid {source}:\n" + "\n".join(lines))


def _allowed_keys(loc: tuple, model: type[FrozenConfig]) -> list[str]:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation,
                                                                                     FrozenConfig):
            break
        model = field.annotation
    return sorted(model.model_fields)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load ``path`` (default: ``config/default_config.*``), apply dotted overrides, validate."""
    path = Path(path) if path is not None else default_config_path()
    data = apply_overrides(read_config_file(path), overrides or [])
    return validate_config(data, source=f"config {path}")
