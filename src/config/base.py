"""The one base class every configuration section derives from, its error, and its plain-dict form."""

import json
import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

_NULL_STRINGS = {"None", "none", "null", "~", ""}


def _allows_none(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return (origin is typing.Union or origin is types.UnionType) and type(None) in typing.get_args(annotation)


class FrozenConfig(BaseModel):
    """Immutable, strict configuration: unknown keys are errors, values are validated on creation.

    Pydantic's lax coercion stays on purpose: values arriving from the command line or from
    ClearML parameters are strings ("4", "true"), and lax mode turns them into the declared type or
    rejects them with a message naming the field. ClearML also stringifies None, so "None" for an
    optional field means None.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _none_from_string(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fixed = dict(data)
        for name, field in cls.model_fields.items():
            value = fixed.get(name)
            if isinstance(value, str) and value in _NULL_STRINGS and _allows_none(field.annotation):
                fixed[name] = None
        return fixed


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message says which key and why."""


class ResumeError(ConfigError):
    """The continuation would not match the run's checkpoint or data; one line says which key."""


def config_to_dict(cfg: FrozenConfig) -> dict[str, Any]:
    """Plain JSON-safe dict (tuples become lists), for YAML dumps and ClearML."""
    return json.loads(cfg.model_dump_json())
