"""Request bodies checked against the serving limits; every refusal says what was expected and what came.

Plain functions over the parsed JSON (no pydantic request models): the same checks run in the
FastAPI app and under clearml-serving, whose custom engine hands ``preprocess`` a plain dict.
"""

import json
import math
import re
from typing import Any

from src.config.serving import ServingConfig

# every request shape is 2 levels deep; json.loads itself recurses (RecursionError near 1,000)
MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 20  # a 64-bit integer; Python refuses int() of over 4,300 digits with a ValueError
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # one JSON string literal, escapes included


class BadRequest(ValueError):
    """A request the server refuses; ``status`` is the HTTP code (422 unless said otherwise)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def parse_json(text: str) -> Any:
    """``text`` parsed as strict JSON; ``BadRequest`` for what ``json.loads`` accepts or fails on uncleanly.

    Refused: not JSON (400), ``NaN``/``Infinity`` (400: not JSON numbers), nesting over
    ``MAX_JSON_DEPTH`` (400, checked before parsing: json.loads would recurse to a RecursionError),
    integers over ``MAX_INT_DIGITS`` digits and floats beyond the double range such as ``1e400``
    (422: valid JSON, out of range), and strings holding a lone surrogate such as ``"\\ud800"``
    (400: JSON escapes can write it, but it is no Unicode character, and UTF-8 cannot encode it).
    """
    depth = nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise BadRequest(f"request body is JSON nested over {MAX_JSON_DEPTH} levels deep; expected a JSON "
                         "object "
                         'such as {"texts": ["Das ist gut."]}', status=400)
    try:
        body = json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int,
                          parse_float=_finite_float)
    except json.JSONDecodeError as err:
        raise BadRequest(f"request body is not JSON ({err.msg} at line {err.lineno} column {err.colno}); "
                         'expected a JSON object such as {"texts": ["Das ist gut."]}', status=400) from None
    except RecursionError:  # the depth check above counts brackets; this is its backstop
        raise BadRequest("request body is JSON nested too deep to parse", status=400) from None
    check_unicode(body)
    return body


def nesting_depth(text: str) -> int:
    """How deep ``text``'s arrays and objects nest (brackets inside strings do not count), up to
    MAX_JSON_DEPTH + 1."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:  # every normal body: no scan
        return 0
    depth = 0
    for char in re.sub(r"[^][{}]", "", _JSON_STRING.sub("", text)):
        depth += 1 if char in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            break
    return depth


def _no_constant(name: str) -> float:
    raise BadRequest(f"request body is not JSON: {name} is not a JSON number; expected a finite number",
                     status=400)


def _bounded_int(digits: str) -> int:
    n = len(digits.lstrip("-"))
    if n > MAX_INT_DIGITS:
        raise BadRequest(
            f"an integer of {n} digits is out of range; expected at most {MAX_INT_DIGITS} digits")
    return int(digits)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise BadRequest(f"the number {literal[:40]}{'...' if len(literal) > 40 else ''} is out of range; "
                         "expected a finite number within +-1.8e308")
    return value


def check_unicode(value: Any, path: str = "$") -> None:
    """Raise ``BadRequest`` (400) at the first string or key of ``value`` holding a lone surrogate."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            _check_text(item, where)
        elif isinstance(item, list):
            stack.extend((x, f"{where}[{i}]") for i, x in enumerate(item))
        elif isinstance(item, dict):
            for key, x in item.items():
                _check_text(key, f"a key of {where}")
                stack.append((x, f"{where}.{key}"))


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise BadRequest(f"invalid Unicode in {where.encode('ascii', 'backslashreplace').decode()}: a lone "
                         f"surrogate {text[err.start].encode('unicode_escape').decode()} at character "
                         f"{err.start}; expected text (a character above U+FFFF is escaped as a surrogate "
                         "pair, such as "
                         '"\\ud83d\\ude00")', status=400) from None


def check_fields(body: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    """``body`` as a JSON object holding every required field and no unknown one."""
    if not isinstance(body, dict):
        raise BadRequest(f"expected a JSON object with fields {list(required + optional)}, got "
                         f"{json_type(body)}")
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; expected {list(required)}"
                         + (f" and optionally {list(optional)}" if optional else ""))
    missing = [name for name in required if name not in body]
    if missing:
        raise BadRequest(f"missing field(s) {missing}; expected a JSON object like {example(required)}")
    return body


def check_texts(value: Any, config: ServingConfig) -> list[str]:
    """A non-empty list of at most ``max_texts_per_request`` non-blank strings of at most
    ``max_chars_per_text``."""
    if not isinstance(value, list):
        raise BadRequest(f'"texts" must be a list of strings, got {json_type(value)}')
    if not value:
        raise BadRequest('"texts" is empty; expected 1 to '
                         f"{config.max_texts_per_request} strings")
    if len(value) > config.max_texts_per_request:
        raise BadRequest(f'"texts" has {len(value)} strings; at most {config.max_texts_per_request} per '
                         'request')
    wrong = [f"{i} ({json_type(text)})" for i, text in enumerate(value) if not isinstance(text, str)]
    if wrong:
        raise BadRequest(f'"texts" must hold strings only; not a string at index {", ".join(wrong[:10])}')
    blank = [i for i, text in enumerate(value) if not text.strip()]
    if blank:
        raise BadRequest(f'"texts" at index {blank[:10]} empty or whitespace only; expected text to process')
    long = [f"{i} ({len(text)} characters)" for i, text in enumerate(value)
            if len(text) > config.max_chars_per_text]
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


def check_number(body: dict, name: str, default: float | None, low: float = -math.inf,
                 high: float = math.inf) -> float | None:
    """``body[name]`` as a finite float in [low, high] (an int is fine; JSON null or absent: ``default``)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f'"{name}" must be a number, got {json_type(value)} {value!r}')
    number = float(value)  # an int of at most MAX_INT_DIGITS digits: always finite
    if not math.isfinite(number):  # parse_json refuses NaN and infinity; clearml-serving's dict may hold them
        raise BadRequest(f'"{name}" must be a finite number, got {value!r}')
    if not low <= number <= high:
        raise BadRequest(f'"{name}" must be a number between {low:g} and {high:g}, got {value!r}')
    return number


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
