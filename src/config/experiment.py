"""The whole experiment's configuration, loaded from ``config/*.yaml|json`` plus dotted overrides."""

import json
from pathlib import Path
from typing import Any

import yaml
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from src.config.base import ConfigError, FrozenConfig
from src.config.data import BatchingConfig, DataConfig, TokenizerConfig
from src.config.evaluation import EvaluationConfig
from src.config.files import default_config_path, read_config_file
from src.config.model import ModelConfig
from src.config.tracking import TrackingConfig
from src.config.training import TrainingConfig

# the tokenizer kinds each task's tokenize step knows (images have none: the default stands)
TOKENIZER_KINDS = {"language_modeling": ("bpe", "char"), "classification": ("bpe", "byte", "word", "char"),
                   "translation": ("bpe",), "image_classification": ("bpe",)}
TASK_NAMES = {"language_modeling": "language modelling", "classification": "text classification",
              "translation": "translation", "image_classification": "image classification"}


class ExperimentConfig(FrozenConfig):
    """Every section of one run. YAML/JSON files map onto it 1:1."""

    # what is learned: translation (encoder_decoder), text classification (the classifier families),
    # language modelling (decoder_lm) or image classification (vit)
    task: Literal["translation", "classification", "language_modeling", "image_classification"] = "translation"
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
    def _family_fits_the_task(self) -> "ExperimentConfig":
        fits = {"translation": {"encoder_decoder"},
                "classification": {"encoder_classifier", "lstm_classifier", "gru_classifier", "rnn_classifier"},
                "language_modeling": {"decoder_lm"}, "image_classification": {"vit"}}[self.task]
        if self.model.family not in fits:
            raise ValueError(f"task={self.task!r} needs model.family in {sorted(fits)}, got {self.model.family!r}")
        sources = {"translation": {"ding", "hf", "local"}, "classification": {"imdb", "listops", "hf", "local"},
                   "language_modeling": {"prose", "hf", "local"}, "image_classification": {"fashion_mnist"}}[self.task]
        if self.data.source not in sources:
            raise ValueError(f"task={self.task!r} reads data.source in {sorted(sources)}, got {self.data.source!r}")
        fixed_size = self.task in ("language_modeling", "image_classification")
        if fixed_size and self.batching.batch_size is None:
            raise ValueError(f"task={self.task!r} batches fixed-size items: set batching.batch_size")
        if not fixed_size and self.batching.batch_size is not None:
            raise ValueError(f"task={self.task!r} batches by tokens (batching.max_tokens); batching.batch_size is "
                             f"for language modelling and images (got batch_size={self.batching.batch_size})")
        if self.task != "language_modeling" and self.batching.block_size is not None:
            raise ValueError(f"batching.block_size is the language model's window; task={self.task!r} has none")
        block = self.batching.block_size or self.model.max_positions
        if block > self.model.max_positions:
            raise ValueError(f"batching.block_size={block} exceeds model.max_positions={self.model.max_positions}: "
                             "the model has no position for the later tokens of a window")
        kinds = TOKENIZER_KINDS[self.task]
        if self.tokenizer.kind not in kinds:
            uses = [TASK_NAMES[task] for task, allowed in TOKENIZER_KINDS.items() if self.tokenizer.kind in allowed]
            raise ValueError(f"tokenizer.kind={self.tokenizer.kind!r} is for {' and '.join(uses)}, not "
                             f"task={self.task!r} (it takes tokenizer.kind in {sorted(kinds)})")
        if self.task == "classification":
            self._texts_fit_the_model()
        return self

    def _texts_fit_the_model(self) -> None:
        """A classified text has a position for each of its tokens, and a ListOps expression is never cut."""
        longest = self.tokenizer.max_tokens_per_sentence
        if self.model.family == "encoder_classifier" and longest > self.model.max_positions:
            raise ValueError(f"tokenizer.max_tokens_per_sentence={longest} exceeds model.max_positions="
                             f"{self.model.max_positions}: the model has no position for a text's later tokens")
        if self.data.source == "listops" and self.tokenizer.kind == "word":
            n = self.data.listops_max_length
            words = 3 * n - 2 if self.data.listops_parentheses else n  # one "( ... )" pair per token but one
            if longest < words + 1:
                raise ValueError(f"tokenizer.max_tokens_per_sentence={longest} would cut ListOps expressions, whose "
                                 f"value needs every token: [CLS] + up to {words} words (data.listops_max_length={n}"
                                 f"{', with parentheses' if self.data.listops_parentheses else ''}); expected >= "
                                 f"{words + 1}")

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


def _set_path(data: dict[str, Any], loc: tuple, value: Any) -> None:
    node = data
    for part in loc[:-1]:
        node = node[part]
    node[loc[-1]] = value


def _parse_stringified(data: dict[str, Any], err: ValidationError) -> bool:
    """Parse values that arrived as strings ("[0.9, 0.98]", "null") as YAML; True if any changed.

    ClearML hands parameters back as strings (clearml #1668); pydantic's lax mode already turns
    "512" into 512, but not "[0.9, 0.98]" into a tuple or "None" into None.
    """
    changed = False
    for e in err.errors():
        raw = e.get("input")
        if not isinstance(raw, str) or e["type"] == "extra_forbidden":
            continue
        try:
            value = yaml.safe_load(raw) if raw not in ("None", "none") else None
        except yaml.YAMLError:
            continue
        if value != raw:
            try:
                _set_path(data, e["loc"], value)
            except (KeyError, TypeError, IndexError):  # loc names a union member, not a key
                continue
            changed = True
    return changed


def validate_config(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Validate a mapping; the error lists each bad key with expected and actual values."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as first:
        data = json.loads(json.dumps(data))
        if _parse_stringified(data, first):
            try:
                return ExperimentConfig.model_validate(data)
            except ValidationError:
                pass
        err = first
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            if not e["loc"] or e["type"] == "value_error" and isinstance(e.get("input"), dict):
                lines.append(f"  {loc + ': ' if loc else ''}{e['msg'].removeprefix('Value error, ')}")  # a whole-section rule
            elif e["type"] == "extra_forbidden":
                lines.append(f"  {loc}: unknown key (allowed: {', '.join(_allowed_keys(e['loc']))})")
            else:
                lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})")
        raise ConfigError(f"invalid {source}:\n" + "\n".join(lines)) from None


def _allowed_keys(loc: tuple) -> list[str]:
    model: type[FrozenConfig] = ExperimentConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, FrozenConfig):
            break
        model = field.annotation
    return sorted(model.model_fields)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load ``path`` (default: ``config/default_config.*``), apply dotted overrides, validate."""
    path = Path(path) if path is not None else default_config_path()
    data = apply_overrides(read_config_file(path), overrides or [])
    return validate_config(data, source=f"config {path}")
