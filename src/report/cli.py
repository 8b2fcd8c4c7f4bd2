"""``python -m src.main report RUN [--runs-dir DIR] [--out FILE]``: write a run's HTML report, print
its path."""

import argparse
from pathlib import Path

from loguru import logger

from src.arguments import output_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", default="latest",
                        help="a run folder, run id, run name (its newest run) or 'latest' (default)")
    parser.add_argument("--runs-dir", default="runs",
                        help="where run ids and names are looked up (default: runs)")
    parser.add_argument("--out", type=output_file, default=None,
                        help="the HTML file to write (default: <run folder>/report.html)")


def command(args: argparse.Namespace) -> tuple[int, str]:
    """Resolve the run, write its report; the path is the command's output (for a reader or a pipe)."""
    from src.report import write_report
    from src.runs import RunNotFoundError, resolve_run

    try:
        run_dir = resolve_run(args.run, args.runs_dir)
    except RunNotFoundError as err:
        logger.error("report: {}", err)
        return 1, ""
    path = write_report(run_dir, Path(args.out) if args.out else None)
    return 0, str(path)  # the command's output
