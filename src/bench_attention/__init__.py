"""Benchmark: how attention's time and memory grow with sequence length n.

    python -m src.main bench attention [--json] [--lengths 512,1024,...] [--window 256] [--track]

One attention layer and one pre-norm encoder layer (batch 1, d_model 256, 4 heads by default),
forward + backward, at n = 512 ... 16384, in four variants: full attention on the math path
(materialises the (H, n, n) weights), full attention through ``F.scaled_dot_product_attention``,
sliding-window attention and Longformer attention (``--window`` tokens on each side). For each
point: the median wall time of ``--repeats`` passes and the peak memory the pass adds, each
point in a fresh process (``measure.py``: how memory is measured on CPU and on CUDA). Then the
log-log slope of time against n per variant, and the ratios the issue targets at n = 8192 (the
speed-ups at 16384 too).
``--track`` records the run as a ClearML task (``track.py``).

Modules: ``grid.py`` (the variants, modules and lengths), ``measure.py`` (the child: one
measurement), ``runner.py`` (the parent: children and skips), ``summary.py`` (slopes, ratios,
the table), ``track.py`` (ClearML and the figure).
"""

import argparse
import contextlib
import json
import sys
from importlib.metadata import version
from pathlib import Path

from src.arguments import NON_NEGATIVE_NUMBER, POSITIVE_INT, POSITIVE_NUMBER, SEED
from src.bench_attention.grid import LENGTHS, MODULES, VARIANTS


def _names(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        if not names or any(name not in choices for name in names):
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {list(choices)}, "
                                             f"got {text!r}")
        return names

    return parse


def _lengths(text: str) -> list[int]:
    try:
        lengths = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        lengths = []
    if not lengths or lengths[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive lengths like 512,1024, got {text!r}")
    return lengths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--json", action="store_true", help="print one JSON object instead of a table")
    add("--lengths", type=_lengths, default=list(LENGTHS), help="sequence lengths n, comma-separated")
    add("--variants", type=_names(tuple(VARIANTS)), default=list(VARIANTS), help="comma-separated")
    add("--modules", type=_names(MODULES), default=list(MODULES), help="comma-separated")
    add("--d-model", type=POSITIVE_INT, default=256)
    add("--heads", "--n-heads", dest="n_heads", type=POSITIVE_INT, default=4)
    add("--window", type=POSITIVE_INT, default=256, help="tokens seen on each side (windowed variants)")
    add("--d-ff", type=POSITIVE_INT, default=1024, help="feed-forward width of the encoder layer")
    add("--repeats", type=POSITIVE_INT, default=3, help="timed passes per point (the median is reported)")
    add("--warmup-s", type=NON_NEGATIVE_NUMBER, default=0.5,
        help="seconds of untimed passes (at least one) before the memory pass and before the timed ones")
    add("--threads", type=POSITIVE_INT, default=2, help="torch intra-op threads")
    add("--device", default="cpu", help="cpu or cuda[:i]")
    add("--seed", type=SEED, default=0)
    add("--max-memory-mib", type=POSITIVE_NUMBER, default=None,
        help="skip points predicted to add more (default on CPU: 80%% of MemAvailable less 512 MiB)")
    add("--timeout-s", type=POSITIVE_NUMBER, default=1800.0, help="per point; a point over it is skipped")
    add("--track", action="store_true", help="record the run as a ClearML task (offline without a server)")
    add("--offline", action="store_true", help="with --track: force ClearML offline mode")
    add("--project-name", default="stepwise-transformers", help="ClearML project (with --track)")
    add("--task-name", default="bench-attention", help="ClearML task name (with --track)")
    add("--output-dir", default="runs/bench-attention",
        help="with --track: results.json, the figure and the offline session zip go here")


def settings_from(args: argparse.Namespace) -> dict:
    """The bench's settings as a plain dict (the JSON's ``settings``), validated."""
    if args.d_model % args.n_heads != 0:
        raise ValueError(f"d_model={args.d_model} is not divisible by heads={args.n_heads}")
    for name in ("window", "repeats", "threads", "d_ff"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    sizes = ("d_model", "n_heads", "window", "d_ff", "lengths", "variants", "modules")
    run = ("repeats", "warmup_s", "threads", "device", "seed", "max_memory_mib", "timeout_s")
    cuda = args.device.startswith("cuda")
    return {"batch": 1, **{key: getattr(args, key) for key in (*sizes, *run)}, "torch": version("torch"),
            "memory_measure": "torch.cuda.max_memory_allocated" if cuda else "resident memory, VmHWM - VmRSS"}


def run(settings: dict) -> dict:
    """Measure every point and summarise: the JSON object ``report`` prints."""
    from src.bench_attention.runner import measure_all
    from src.bench_attention.summary import summarise

    return summarise(settings, measure_all(settings))


def report(args: argparse.Namespace) -> str:
    """Run the bench; return the table (or, with ``--json``, the JSON object); with ``--track``, record it."""
    from src.bench_attention.summary import table

    result = run(settings_from(args))
    if args.track:
        from src.bench_attention.track import track

        with contextlib.redirect_stdout(sys.stderr):  # ClearML prints its own lines; stdout is the result's
            track(result, project=args.project_name, task_name=args.task_name,
                  output_dir=Path(args.output_dir),
                  offline=True if args.offline else None)  # fmt: skip
    return json.dumps(result, indent=2) if args.json else table(result)
