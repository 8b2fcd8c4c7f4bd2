"""The values a task holds for a connected dict, read back as the web UI left them.

On an agent, ``Task.connect(dict)`` returns the task's values cast to the types of the dict it was
given (clearml ``backend_interface/task/args.py``, ``copy_to_dict``). Where that cast fails it logs a
warning and keeps the given value, so an edit is dropped without an error: ``training.grad_clip``
edited to ``None`` (``float("None")`` fails) or an int field edited to ``6.5`` runs the old value.
Here the task's own strings are read instead (``Task.get_parameters``), and the pydantic config
decides: a field that allows None takes ``"None"`` or ``""`` as None (clearml #1175, and how the SDK
stores None), numbers and bools parse from their strings (#1238), and a bad edit fails validation
with the key named.
"""

from collections.abc import Mapping
from typing import Any


def held_values(sent: Mapping[str, Any], held: Mapping[str, str], section: str) -> dict[str, Any]:
    """``sent``, with every leaf the task holds as ``"<section>/<a>/<b>"`` replaced by the task's string.

    Args:
        sent: the dict that was connected (what the step's arguments said).
        held: ``Task.get_parameters()``: ``{"section/a/b": "value"}``, every value a string.
        section: the name the dict was connected under.

    A leaf the task does not hold keeps the sent value. Every other leaf is the task's string, a list
    too (``"[0.8, 0.95]"``): ``validate_config`` parses what does not validate as a string. An empty
    dict keeps ``{}``: the SDK files it under its last key alone (``flatten_dictionary`` drops the prefix:
    ``{"a": {"b": {}}}`` becomes ``section/b``), so no edit of it can be read back, and dropping it
    would lose the key (clearml #265).
    """

    def read(value: Any, path: str) -> Any:
        if isinstance(value, Mapping):
            return {str(k): read(v, f"{path}/{k}") for k, v in value.items()} if value else {}
        raw = held.get(path)
        return value if raw is None else raw

    return {str(k): read(v, f"{section}/{k}") for k, v in sent.items()}


def changed_leaves(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> dict[str, tuple]:
    """``{"training.lr": (before, after)}`` for every leaf of ``before`` whose value ``after`` changed."""
    changed: dict[str, tuple] = {}
    for key, old in before.items():
        new = after.get(key) if isinstance(after, Mapping) else None
        if isinstance(old, Mapping) and old:
            changed |= changed_leaves(old, new if isinstance(new, Mapping) else {}, f"{prefix}{key}.")
        elif new != old and not (isinstance(old, (list, tuple)) and isinstance(new, (list, tuple))
                                 and list(old) == list(new)):
            changed[f"{prefix}{key}"] = (old, new)
    return changed
