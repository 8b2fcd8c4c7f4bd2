"""The one base class every configuration section derives from."""

from pydantic import BaseModel, ConfigDict


class FrozenConfig(BaseModel):
    """Immutable, strict configuration: unknown keys are errors, values are validated on assignment.

    ``strict=False`` keeps pydantic's lax coercion on purpose: values arriving from the command
    line or from ClearML parameters are strings ("4", "true"), and pydantic's lax mode turns them
    into the declared type or rejects them with a message naming the field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
