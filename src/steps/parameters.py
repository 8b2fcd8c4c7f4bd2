"""Each step's parameters: the config sections that shape its output, and nothing else.

ClearML's step cache (``ClearmlJob._create_task_hash``) hashes all of a step's parameters, so a step
that received the whole config would run again whenever any key changed. A step with a
``StepSpec.shaped_by`` (data prep: ``task``, ``data``; tokenization also ``tokenizer`` and
``model.init_from``) receives and connects only those; the others (train, evaluate, register,
never cached) receive the whole config, so a clone of their task can edit any key.

The pipeline's own parameters are one per config key (``training/lr``), each the string the web UI stores,
validated as one config (``validate_config`` parses the strings back) before any step runs.
"""

import functools
import hashlib
import json
import types
import typing
from typing import Any

from pydantic import create_model

from src.config import ConfigError, FrozenConfig, config_to_dict
from src.experiment import ExperimentConfig, validate_config
from src.steps.table import StepSpec

Subset = dict[str, Any]
# where a step writes and reports, not what: a data step on an agent takes them from the defaults
PLACEMENT = ("run_name", "output_dir", "run_id", "tracking")


def step_parameters(spec: StepSpec, config: ExperimentConfig | dict[str, Any]) -> Subset:
    """The part of ``config`` that ``spec`` receives, as plain JSON nested as in the config:
    ``{"task": ..., "data": {...}, "model": {"init_from": ...}}`` for ``model.init_from``."""
    if not spec.shaped_by:
        return config_to_dict(config) if isinstance(config, FrozenConfig) else json.loads(json.dumps(config))
    subset: Subset = {}
    for name in spec.shaped_by:
        section, _, key = name.partition(".")
        value = _part(config, section)
        if key:
            subset.setdefault(section, {})[key] = _plain(_part(value, key))
        else:
            subset[section] = _plain(value)
    return subset


def _part(value: Any, name: str) -> Any:
    return value[name] if isinstance(value, dict) else getattr(value, name)


def _plain(value: Any) -> Any:
    return config_to_dict(value) if isinstance(value, FrozenConfig) else json.loads(json.dumps(value))


def parameters_digest(parameters: Subset | str) -> str:
    """The digest a step's ``config_digest`` argument holds for its ``config`` argument: a hand edit
    of the pipeline's copy (``kwargs/config``) then no longer matches it."""
    if isinstance(parameters, str):
        parameters = json.loads(parameters)
    return hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:16]


class AbsentSection:
    """A config section a step does not receive: reading any of its keys fails, so a step cannot depend on
    a value that is not in its cache key. ``present`` holds the keys of a partial section
    (``model.init_from`` of tokenize)."""

    def __init__(self, step: str, section: str, present: dict[str, Any] | None = None) -> None:
        self._step, self._section, self._present = step, section, present or {}

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") or key.startswith("_"):
            raise AttributeError(key)
        if key in self._present:
            return self._present[key]
        raise AttributeError(
            f"step {self._step} read {self._section}.{key}, which is not among its parameters (its output "
            f"would then change without its cache key): add it to the step's shaped_by in src/steps/table.py")

    def __repr__(self) -> str:
        return f"AbsentSection({self._section!r}, present={sorted(self._present)})"

    def model_copy(self, update: dict[str, Any]) -> "AbsentSection":
        """The section with the present keys of ``update`` changed (as a pydantic config's ``model_copy``:
        a step replaces a source by its local path, ``src/steps/table.py``)."""
        unknown = sorted(set(update) - set(self._present))
        if unknown:
            raise AttributeError(f"step {self._step} set {self._section}.{unknown[0]}, which is not among "
                                 "its parameters")
        return AbsentSection(self._step, self._section, self._present | update)


def step_config(spec: StepSpec, parameters: Subset, source: str) -> ExperimentConfig:
    """The config of a step from its parameters.

    A step with the whole config validates it as usual. A step with ``shaped_by`` gets its sections
    validated (unknown or missing keys are errors, as everywhere) and every other section as an
    ``AbsentSection``: no default can reach its output, since reading an absent key fails with the
    key's name. Only ``PLACEMENT`` takes the defaults: where the step's folder lies on the agent
    (a scratch folder there; its output travels as an artifact) and the tracking settings, which on
    an agent only attach to the task the controller made (its name, project and tags are the
    controller's; its ``output_uri``, where artifacts go, is set on the task by the controller too).
    The cross-section rules (``ExperimentConfig._settings_fit_the_task``) are checked on the whole
    config before any step runs (``check_pipeline_parameters`` on the controller, ``load_config``
    offline).
    """
    if not spec.shaped_by:
        return validate_config(parameters, source=source)
    checked = validate_config(parameters, source=source, model=parameters_model(spec.name, spec.shaped_by))
    partial = {name.partition(".")[0] for name in spec.shaped_by if "." in name}
    values: dict[str, Any] = {}
    for section, field in ExperimentConfig.model_fields.items():
        if section in PLACEMENT:
            values[section] = field.get_default(call_default_factory=True)
        elif section not in type(checked).model_fields:
            values[section] = AbsentSection(spec.name, section)
        elif section in partial:
            values[section] = AbsentSection(spec.name, section, dict(getattr(checked, section)))
        else:
            values[section] = getattr(checked, section)
    return ExperimentConfig.model_construct(**values)


@functools.cache
def parameters_model(step: str, shaped_by: tuple[str, ...]) -> type[FrozenConfig]:
    """A frozen, strict model of a step's parameters: its whole sections as in ``ExperimentConfig``,
    and for a dotted name (``model.init_from``) a section holding only that key."""
    fields = ExperimentConfig.model_fields
    partial: dict[str, list[str]] = {}
    definitions: dict[str, Any] = {}
    for name in shaped_by:
        section, _, key = name.partition(".")
        if key:
            partial.setdefault(section, []).append(key)
        else:
            definitions[section] = (fields[section].annotation, ...)
    for section, keys in partial.items():
        owner = fields[section].annotation.model_fields
        part = create_model(f"Partial{section.title()}", __base__=FrozenConfig,
                            **{key: (owner[key].annotation, ...) for key in keys})
        definitions[section] = (part, ...)
    return create_model(f"{step.title()}Parameters", __base__=FrozenConfig, **definitions)


# --- the pipeline's parameters: one per config key ---------------------------------------------------
def _leaves(model: type[FrozenConfig] = ExperimentConfig, prefix: str = "") -> dict[str, Any]:
    """``"training/lr"`` -> its pydantic field, for every key of the config."""
    leaves = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, FrozenConfig):
            leaves |= _leaves(annotation, f"{prefix}{name}/")
        else:
            leaves[f"{prefix}{name}"] = field
    return leaves


def pipeline_parameters(cfg: ExperimentConfig) -> dict[str, Any]:
    """The pipeline's parameters: ``{"training/lr": 0.0003, ...}``, one per key of ``cfg``, named as
    the step tasks' connected ``config/training/lr`` (without the section)."""
    flat: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        for key, item in value.items():
            if f"{prefix}{key}" in LEAVES:
                flat[f"{prefix}{key}"] = item
            else:
                walk(item, f"{prefix}{key}/")

    walk(config_to_dict(cfg), "")
    return flat


def parameter_types() -> dict[str, str]:
    """Each parameter's type as the web UI shows it: ``float``, ``int``, ``bool``, ``str``, ``list``,
    with `` | None`` where the key may be unset."""
    return {name: _type_name(field.annotation) for name, field in LEAVES.items()}


def parameter_choices() -> dict[str, list[str]]:
    """The allowed values of each key that has a fixed set (``[]`` for the others)."""
    return {name: [str(c) for c in _literal_choices(field.annotation)] for name, field in LEAVES.items()}


def _type_name(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(dict.fromkeys(_type_name(a) for a in args)) + " | None"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return type(args[0]).__name__
    if origin in (tuple, list):
        return "list"
    return getattr(annotation, "__name__", str(annotation))


def _literal_choices(annotation: Any) -> tuple:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return next((c for a in typing.get_args(annotation) if (c := _literal_choices(a))), ())
    return ()


def check_pipeline_parameters(parameters: dict[str, Any], cfg: ExperimentConfig) -> ExperimentConfig:
    """The config the pipeline's parameters give, checked as a whole: ``cfg`` with every parameter set.

    A bad value or an unknown key raises ``ConfigError`` in one line that names each bad key:
    ``invalid pipeline parameters: training.lr: Input should be a valid number ... (got 'abc')``.
    """
    data = config_to_dict(cfg)
    for name, raw in parameters.items():
        node = data
        *sections, key = name.split("/")
        for section in sections:
            child = node.setdefault(section, {})
            node = child if isinstance(child, dict) else {}
        node[key] = raw  # a string as the server holds it: validate_config parses it back
    try:
        return validate_config(data, source="pipeline parameters")
    except ConfigError as err:
        head, *lines = str(err).splitlines()
        raise ConfigError(f"{head} " + "; ".join(line.strip() for line in lines)) from None


LEAVES = _leaves()
