"""Running a command: parse its arguments, call its function, write its output to standard output.

``python -m src.main`` and the stand-alone ``python -m src.<package>.<module>`` commands (the
export parity check, the benches) share this, so every command writes its output the same way
while the library functions it calls only return text (events go to loguru, on stderr). This is
the one library module that writes to stdout; it imports nothing from ``src`` but
``src.arguments``, so no command depends on ``src.main``.
"""

import argparse
import sys
from collections.abc import Callable, Sequence

from src.arguments import CommandParser


def emit(status: int, output: str) -> int:
    """Write a command's output, a line, to stdout (for the reader or a pipe); pass its exit status on."""
    if output:
        sys.stdout.write(f"{output}\n")
        sys.stdout.flush()  # before the process exits or the next command's log lines
    return status


def run_module_command(
    prog: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    command: Callable[[argparse.Namespace], tuple[int, str]],
    argv: Sequence[str] | None = None,
    description: str | None = None,
) -> int:
    """A ``python -m src.<package>.<module>`` command (``src.export.parity``, the benches): parse ``argv``,
    run ``command(args)`` -> (exit status, output) and print the output here, as for the subcommands."""
    parser = CommandParser(prog=prog, description=description)
    add_arguments(parser)
    return emit(*command(parser.parse_args(argv)))
