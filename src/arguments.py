"""Command-line parsing shared by every command: the parser class and the value types of numeric options.

``CommandParser`` takes options before, between or after the positional arguments, as people
type them (``translate latest --backend onnx "Das ist gut."``), and reports every usage error with
its own usage line. The types refuse a bad value at parse time, naming the option, the range
and the value, instead of letting it fail later deep in the code (``--batch-size 0`` as
``range() arg 3 must not be zero``, ``--max-sentences -3`` as an ``IndexError``).

This module imports nothing from ``src``: every command can use it without an import cycle and
without slowing ``--help`` down.
"""

import argparse
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

# reStructuredText inline markup a docstring may carry: ``literal``, `title` and :role:`target`
_INLINE_MARKUP = re.compile(r"(?::[\w.-]+:)?``?([^`]+?)``?")


def plain(text: str | None) -> str | None:
    """``text`` without reStructuredText inline markup, as a terminal should show it (descriptions come from
    docstrings)."""
    return _INLINE_MARKUP.sub(r"\1", text) if text else text


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose options may sit anywhere among its positional arguments.

    ``parse_known_args`` (which ``parse_args`` and a parent's subcommand dispatch both call) runs
    argparse's ``parse_known_intermixed_args``: options first, then the positionals left in order.
    A parser with its own subcommands (``bench attention``) is parsed as usual: argparse cannot
    intermix those, and its subcommand's parser is a ``CommandParser`` again.

    A string no argument takes is this parser's own usage error, not left for a parent to report
    with the top-level usage: ``parse_known_args`` never returns unrecognized arguments. Its
    description and epilog are shown as plain text (``plain``).
    """

    def __init__(self, *args, description: str | None = None, epilog: str | None = None, **kwargs) -> None:
        super().__init__(*args, description=plain(description), epilog=plain(epilog), **kwargs)
        self._in_intermixed_pass = False

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None):
        if self._in_intermixed_pass or any(action.nargs == argparse.PARSER for action in self._actions):
            namespace, extras = super().parse_known_args(args, namespace)
        else:
            # parse_known_intermixed_args calls parse_known_args twice (options, then positionals): those
            # calls must be argparse's own
            self._in_intermixed_pass = True
            try:
                namespace, extras = self.parse_known_intermixed_args(args, namespace)
            finally:
                self._in_intermixed_pass = False
        if extras and not self._in_intermixed_pass:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]`` (either end open when None)."""
    expected = _range_text("an integer", low, high)

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = expected  # argparse names the type in some messages
    return parse


def number(low: float | None = None, high: float | None = None, *,
           low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in ``[low, high]`` (``(low, high]`` with ``low_open``); nan and inf
    are refused."""
    expected = _range_text("a finite number", low, high, low_open=low_open)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        below = low is not None and (value <= low if low_open else value < low)
        if not math.isfinite(value) or below or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = expected
    return parse


def _range_text(kind: str, low: float | None, high: float | None, *, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"{kind} {'>' if low_open else '>='} {low} and <= {high}"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low}"
    return f"{kind} <= {high}" if high is not None else kind


def output_file(text: str) -> str:
    """An argparse type: a file the command will write, refused at parse time (before any work) when it
    is a folder, or when its nearest existing folder is a file or read-only."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; expected a file to write")
    return _writable(text)


def output_folder(text: str) -> str:
    """An argparse type: a folder the command will write into (made if missing), refused at parse time when
    it is a file, or when its nearest existing folder is a file or read-only."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; expected a folder to write into")
    return _writable(text)


def _writable(text: str) -> str:
    path = Path(text).absolute()
    ancestor = next(folder for folder in (path, *path.parents) if folder.exists())  # "/" at the latest
    if not ancestor.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: {ancestor} is read-only")
    return text


POSITIVE_INT = integer(1)
NON_NEGATIVE_INT = integer(0)
SEED = integer(0, 2**63 - 1)  # what torch.manual_seed and numpy take without overflowing
PORT = integer(0, 65535)  # 0: any free port
POSITIVE_NUMBER = number(0, low_open=True)
NON_NEGATIVE_NUMBER = number(0)
PROBABILITY = number(0, 1, low_open=True)  # a mass such as top-p: (0, 1]
