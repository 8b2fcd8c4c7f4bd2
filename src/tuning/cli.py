"""``sweep`` subcommand (being built: this file is replaced by the real command line)."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", default=None)


def command(args: argparse.Namespace) -> int:
    raise NotImplementedError("sweep: not built yet")
