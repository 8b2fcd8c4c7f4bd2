"""``export`` subcommand: a run or checkpoint as ONNX graphs, a manifest and a Triton repository
(``exporter.py``)."""

import argparse
from pathlib import Path

from loguru import logger


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_OR_CHECKPOINT",
                        help="a checkpoint file, a run folder, a run id or name under --runs-dir, "
                             "or 'latest'")
    parser.add_argument("--out", default=None,
                        help="folder for the graphs (default: <run>/export, or <checkpoint>.export beside a "
                             "loose file)")
    parser.add_argument("--runs-dir", default="runs",
                        help="where run ids and names are looked up (default: runs)")


def command(args: argparse.Namespace) -> tuple[int, str]:
    from src.export.exporter import export_checkpoint
    from src.runs import resolve_checkpoint

    out = export_checkpoint(resolve_checkpoint(args.run, args.runs_dir), Path(args.out) if args.out else None)
    logger.info("export: done; load it with --backend onnx, or serve {} with Triton", out / "triton")
    return 0, str(out)  # the command's output: the export folder, for a pipe
