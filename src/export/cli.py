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
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="int8: also write each graph with int8 linear layers (ONNX Runtime dynamic "
                             "quantization) as <graph>.int8.onnx; load them with --backend onnx-int8")


def command(args: argparse.Namespace) -> tuple[int, str]:
    from src.export.exporter import export_checkpoint
    from src.runs import resolve_checkpoint

    out = export_checkpoint(resolve_checkpoint(args.run, args.runs_dir), Path(args.out) if args.out else None,
                            args.quantize)
    backends = "--backend onnx or onnx-int8" if args.quantize else "--backend onnx"
    logger.info("export: done; load it with {}, or serve {} with Triton", backends, out / "triton")
    return 0, str(out)  # the command's output: the export folder, for a pipe
