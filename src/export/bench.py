"""Greedy decoding on ONNX Runtime against PyTorch eager, side by side in one run.

    python -m src.export.bench RUN_OR_CHECKPOINT [--sentences 100] [--repeats 5] [--batch-sizes 1 32] [--json]

Both backends decode the same sentences (the run's test split, ``src/runs/folders.py::run_test_sentences``,
when the run folder has it, else a built-in handful repeated) with the same ``translate`` loop (length-sorted
batches) and ``greedy_decode``; each (backend, batch size) is timed ``--repeats`` times after one warm-up
pass, the backends taking turns (paired: a burst of load on a shared machine hits both), and the median
is reported with sentences/s, with the machine's load average before and after. The table also says whether
the two backends produced the same tokens for every sentence. The ONNX graphs are exported first if the
checkpoint has no up-to-date export (``load_for_inference(backend="onnx")``).
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from loguru import logger

from src.cli_runner import run_module_command

FALLBACK_SENTENCES = ["Ich habe keine Zeit.", "Das ist ein gutes Buch.", "Wir gehen heute Abend nach Hause.",
                      "Der Zug kommt um acht Uhr an.", "Sie hat mir gestern einen langen Brief geschrieben."]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_OR_CHECKPOINT",
                        help="a checkpoint, a run folder, id or name, or 'latest'")
    parser.add_argument("--runs-dir", default="runs",
                        help="where run ids and names are looked up (default: runs)")
    parser.add_argument("--sentences", type=int, default=100, help="sentences decoded per pass (default 100)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed passes per setting; the median is reported")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32], help="default: 1 32")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def bench(checkpoint: Path, n_sentences: int, repeats: int, batch_sizes: list[int]) -> dict:
    """Median seconds and sentences/s of greedy decoding per backend and batch size, and token parity."""
    import torch

    from src.evaluation.evaluate import translate
    from src.inference.translate import decoder_for

    if n_sentences < 1 or repeats < 1 or min(batch_sizes) < 1:
        raise ValueError(f"--sentences, --repeats and --batch-sizes must be >= 1, got {n_sentences}, "
                         f"{repeats}, {batch_sizes}")
    models, sources, source, limit = both_backends(checkpoint, n_sentences, "the bench decodes")
    rows, outputs = [], {}
    load_before = os.getloadavg()
    for batch_size in batch_sizes:
        runs = {}
        for name, trained in models.items():
            decode = decoder_for(trained, beam=1)
            def run(trained=trained, decode=decode, batch_size=batch_size) -> list:
                return translate(trained.model, sources, decode, batch_size, trained.device, "bench", limit)

            runs[name] = run
            outputs[name, batch_size] = run()  # warm-up, and the tokens compared below
        times = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():  # in turns, so that both backends see the same load
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        for name in runs:
            median = statistics.median(times[name])
            rows.append({"backend": name, "batch_size": batch_size, "median_s": round(median, 4),
                         "sentences_per_s": round(len(sources) / median, 1)})
            logger.info("bench: {} batch {}: {:.3f} s median of {}", name, batch_size, median, repeats)
    same = {
        b: sum(outputs["torch",
                       b][i] == outputs["onnx", b][i] for i in range(len(sources))) for b in batch_sizes}
    return {"checkpoint": str(checkpoint), "sentences": len(sources), "sentence_source": source,
            "repeats": repeats,
            "max_new_tokens": limit, "torch_threads": torch.get_num_threads(), "rows": rows,
            "load_average": {"before": [round(x, 2) for x in load_before],
                             "after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()},
            "speedup_onnx_over_torch": {b: _ratio(rows, b) for b in batch_sizes},
            "identical_greedy_outputs": {b: f"{same[b]}/{len(sources)}" for b in batch_sizes}}


def both_backends(checkpoint: Path, n_sentences: int, purpose: str) -> tuple[dict, list[list[int]], str, int]:
    """The checkpoint on PyTorch and on ONNX Runtime, the run's first ``n_sentences`` test sources
    encoded, where they came from, and the config's ``max_new_tokens``; translation models only."""
    from src.inference.loader import load_for_inference
    from src.inference.translate import encode_sources

    models = {"torch": load_for_inference(checkpoint, "cpu"),
              "onnx": load_for_inference(checkpoint, backend="onnx")}
    if models["torch"].family != "encoder_decoder":
        raise ValueError(f"{checkpoint} holds a {models['torch'].family} model; {purpose} translation models")
    texts, source = sentences_of_run(checkpoint, n_sentences)
    return models, encode_sources(models["torch"],
                                  texts), source, models["torch"].config.evaluation.max_new_tokens


def _ratio(rows: list[dict], batch_size: int) -> float:
    seconds = {r["backend"]: r["median_s"] for r in rows if r["batch_size"] == batch_size}
    return round(seconds["torch"] / seconds["onnx"], 2)


def sentences_of_run(checkpoint: Path, n: int) -> tuple[list[str], str]:
    """The first ``n`` source sentences of the run's test split, else the built-in ones repeated to ``n``."""
    from src.runs import run_dir_of_checkpoint
    from src.runs.folders import run_test_sentences

    texts, folder = run_test_sentences(run_dir_of_checkpoint(checkpoint), n)
    if texts:
        return texts, f"{folder} (test split)"
    return [FALLBACK_SENTENCES[i % len(FALLBACK_SENTENCES)] for i in range(n)], "built-in sentences"


def table(result: dict) -> str:
    lines = [(f"greedy decoding, {result['sentences']} sentences from {result['sentence_source']}, "
              f"median of {result['repeats']}, torch threads {result['torch_threads']}"),
             (f"load average (1, 5, 15 min) before {result['load_average']['before']}, after "
              f"{result['load_average']['after']}, on {result['load_average']['cpus']} CPUs"),
             f"{'backend':<8} {'batch':>5} {'median s':>10} {'sent/s':>9}"]
    lines += [f"{r['backend']:<8} {r['batch_size']:>5} {r['median_s']:>10.3f} {r['sentences_per_s']:>9.1f}"
              for r in result["rows"]]
    lines += [f"batch {b}: onnx {s}x torch, identical outputs {result['identical_greedy_outputs'][b]}"
              for b, s in result["speedup_onnx_over_torch"].items()]
    return "\n".join(lines)


def command(args: argparse.Namespace) -> tuple[int, str]:
    """Exit status and output (JSON or the table) of ``python -m src.export.bench``."""
    from src.runs import resolve_checkpoint

    result = bench(resolve_checkpoint(args.run, args.runs_dir), args.sentences, args.repeats,
                   args.batch_sizes)
    return 0, json.dumps(result, indent=2) if args.json else table(result)


def main(argv: list[str] | None = None) -> int:
    return run_module_command("python -m src.export.bench", add_arguments, command, argv,
                              __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
