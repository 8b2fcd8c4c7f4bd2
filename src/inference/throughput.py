"""Classifier runs side by side: test accuracy and inference throughput (a distilled student and its teacher).

    python -m src.inference.throughput STUDENT TEACHER [--texts 512] [--batch-size 32] [--repeats 5]
                                       [--threads 2] [--runs-dir runs] [--json]

Each run's model (PyTorch, CPU, eval mode, no gradient) classifies the first ``--texts`` test texts of its own
tokenize step, real lengths: sorted by length and cut into batches of ``--batch-size``, each padded to its
longest text, as a server batching by length would. One warm-up pass, then ``--repeats`` timed passes, the
runs taking turns so that a burst of load on a shared machine hits all alike; the median is reported, and
each run's throughput against the last run's. The accuracy is each run's ``evaluate`` step's, on its whole
test split (``evaluate/metrics.json``).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from src.arguments import POSITIVE_INT
from src.cli_runner import run_module_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="classifier runs (a folder, id, name or checkpoint); the last is the reference")
    parser.add_argument("--runs-dir", default="runs", help="where run ids and names are looked up")
    parser.add_argument("--texts", type=POSITIVE_INT, default=512, help="test texts per pass (default 512)")
    parser.add_argument("--batch-size", type=POSITIVE_INT, default=32, help="texts per batch (default 32)")
    parser.add_argument("--repeats", type=POSITIVE_INT, default=5,
                        help="timed passes per run; the median is reported (default 5)")
    parser.add_argument("--threads", type=POSITIVE_INT, default=2, help="torch threads (default 2)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def test_batches(run_dir: Path, texts: int, batch_size: int):
    """The first ``texts`` test texts of the run's tokenize step, sorted by length, as padded batches."""
    import torch
    from datasets import load_from_disk

    from src.tasks.classification.task import LabelledCorpus

    ids = load_from_disk(str(run_dir / "tokenize" / "encoded"))["test"]["ids"][:texts]
    corpus = LabelledCorpus(ids, [0] * len(ids))
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    return [corpus.batch(order[i:i + batch_size], torch.device("cpu"))[0]
            for i in range(0, len(order), batch_size)], len(ids)


def compare(checkpoints: list[Path], texts: int, batch_size: int, repeats: int, threads: int) -> list[dict]:
    """Per run: its layers, parameters, test accuracy, median seconds per pass and texts/s, and its
    throughput over the last run's."""
    import torch

    from src.inference.loader import load_for_inference
    from src.training.monitor import parameter_count

    torch.set_num_threads(threads)
    rows, passes = [], []
    for checkpoint in checkpoints:
        trained = load_for_inference(checkpoint, device="cpu")
        if trained.family != "encoder_classifier":
            raise ValueError(f"{checkpoint} holds a {trained.family!r} model; this compares text classifiers "
                             "(family encoder_classifier)")
        run_dir = checkpoint.parents[2]  # <run>/train/checkpoints/best.pt
        batches, count = test_batches(run_dir, texts, batch_size)
        metrics = run_dir / "evaluate" / "metrics.json"
        accuracy = json.loads(metrics.read_text())["accuracy"] if metrics.is_file() else None
        rows.append({"run": run_dir.name, "layers": trained.config.model.n_encoder_layers,
                     "parameters": parameter_count(trained.model), "test_accuracy": accuracy, "texts": count})
        passes.append((trained.model, batches))
    times: list[list[float]] = [[] for _ in passes]
    with torch.no_grad():
        for attempt in range(repeats + 1):  # the first pass warms up
            for i, (model, batches) in enumerate(passes):  # in turns: every run sees the same load
                started = time.perf_counter()
                for batch in batches:
                    model(batch)
                if attempt:
                    times[i].append(time.perf_counter() - started)
    for row, seconds in zip(rows, times):
        row["median_s"] = statistics.median(seconds)
        row["texts_per_s"] = row["texts"] / row["median_s"]
    for row in rows:
        row["speedup"] = row["texts_per_s"] / rows[-1]["texts_per_s"]
    return rows


def table(rows: list[dict]) -> str:
    lines = [f"{'run':<40} {'layers':>6} {'parameters':>11} {'test acc':>9} {'texts/s':>9} {'speed-up':>9}"]
    for row in rows:
        accuracy = f"{row['test_accuracy']:.4f}" if row["test_accuracy"] is not None else "-"
        lines.append(f"{row['run']:<40} {row['layers']:>6} {row['parameters']:>11,} {accuracy:>9} "
                     f"{row['texts_per_s']:>9.1f} {row['speedup']:>8.2f}x")
    first, last = rows[0], rows[-1]
    if len(rows) > 1 and first["test_accuracy"] is not None and last["test_accuracy"] is not None:
        points = 100 * (first["test_accuracy"] - last["test_accuracy"])
        lines.append(f"{first['run']} against {last['run']}: {points:+.2f} accuracy points at "
                     f"{first['speedup']:.2f}x the throughput")
    return "\n".join(lines)


def command(args: argparse.Namespace) -> tuple[int, str]:
    """Exit status and output (JSON or the table) of ``python -m src.inference.throughput``."""
    from src.runs import resolve_checkpoint

    checkpoints = [resolve_checkpoint(run, args.runs_dir) for run in args.runs]
    rows = compare(checkpoints, args.texts, args.batch_size, args.repeats, args.threads)
    return 0, json.dumps(rows, indent=2) if args.json else table(rows)


def main(argv: list[str] | None = None) -> int:
    return run_module_command("python -m src.inference.throughput", add_arguments, command, argv,
                              __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
