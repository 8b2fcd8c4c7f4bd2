"""Request bodies checked against the serving limits; every refusal says what was expected and what came.

Plain functions over the parsed JSON (no pydantic request models): the same checks run in the
FastAPI app and under clearml-serving, whose custom engine hands ``preprocess`` a plain dict.
"""

from typing import Any

from src.config.serving import ServingConfig


class BadRequest(ValueError):
    """A request the server refuses; ``status`` is the HTTP code (422 unless said otherwise)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def check_fields(body: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    """``body`` as a JSON object holding every required field and no unknown one."""
    if not isinstance(body, dict):
        raise BadRequest(f"expected a JSON object with fields {list(required + optional)}, got {json_type(body)}")
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; expected {list(required)}"
                         + (f" and optionally {list(optional)}" if optional else ""))
    missing = [name for name in required if name not in body]
    if missing:
        raise BadRequest(f"missing field(s) {missing}; expected a JSON object like {example(required)}")
    return body


def check_texts(value: Any, config: ServingConfig) -> list[str]:
    """A non-empty list of at most ``max_texts_per_request`` non-blank strings of at most ``max_chars_per_text``."""
    if not isinstance(value, list):
        raise BadRequest(f'"texts" must be a list of strings, got {json_type(value)}')
    if not value:
        raise BadRequest('"texts" is empty; expected 1 to '
                         f"{config.max_texts_per_request} strings")
    if len(value) > config.max_texts_per_request:
        raise BadRequest(f'"texts" has {len(value)} strings; at most {config.max_texts_per_request} per request')
    wrong = [f"{i} ({json_type(text)})" for i, text in enumerate(value) if not isinstance(text, str)]
    if wrong:
        raise BadRequest(f'"texts" must hold strings only; not a string at index {", ".join(wrong[:10])}')
    blank = [i for i, text in enumerate(value) if not text.strip()]
    if blank:
        raise BadRequest(f'"texts" at index {blank[:10]} empty or whitespace only; expected text to process')
    long = [f"{i} ({len(text)} characters)" for i, text in enumerate(value) if len(text) > config.max_chars_per_text]
    if long:
        raise BadRequest(f'"texts" at index {", ".join(long[:10])} over the limit of '
                         f"{config.max_chars_per_text} characters per text")
    return value


def check_int(body: dict, name: str, default: int | None, low: int, high: int | None) -> int | None:
    """``body[name]`` as an int in [low, high] (JSON null or absent: ``default``)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f'"{name}" must be an integer, got {json_type(value)} {value!r}')
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise BadRequest(f'"{name}" must be {bounds}, got {value}')
    return value


def check_number(body: dict, name: str, default: float | None) -> float | None:
    """``body[name]`` as a float (an int is fine; JSON null or absent: ``default``)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f'"{name}" must be a number, got {json_type(value)} {value!r}')
    return float(value)


def check_prompt(value: Any, config: ServingConfig) -> str:
    """A string of at most ``max_chars_per_text`` characters; empty starts a new document."""
    if not isinstance(value, str):
        raise BadRequest(f'"prompt" must be a string, got {json_type(value)}')
    if len(value) > config.max_chars_per_text:
        raise BadRequest(f'"prompt" has {len(value)} characters; at most {config.max_chars_per_text}')
    return value


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (``list`` -> array)."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def example(fields: tuple[str, ...]) -> str:
    samples = {"texts": '["Das ist gut."]', "prompt": '"It was"'}
    return "{" + ", ".join(f'"{name}": {samples.get(name, "...")}' for name in fields) + "}"
