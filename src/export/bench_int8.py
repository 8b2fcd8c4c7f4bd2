"""int8 against float32 on ONNX Runtime, side by side in one run: throughput, and the change in quality.

    python -m src.export.bench_int8 RUN_OR_CHECKPOINT [--repeats 5] [--batch-sizes 1 32] [--threads 1]
                                    [--quality] [--max-items N] [--json]

Both backends (``onnx``, ``onnx-int8``: the graphs of ``export --quantize int8``, exported first if the
checkpoint has no such export) run the same work per family, with ``--threads`` ONNX Runtime threads each:

- text classifier: forward passes over ``--items`` rows of ``max_positions`` random ids (texts/s);
- ViT: forward passes over ``--items`` random images (images/s);
- language model: greedy generation of ``--new-tokens`` tokens after an 8-token prompt (tokens/s);
- translation: greedy decoding of ``--items`` random 16-token sources (sentences/s).

Each (backend, batch size) is timed ``--repeats`` times after one warm-up pass, the backends taking turns
so that a burst of load on a shared machine hits both; the median is reported, with the load average.
``--quality`` also scores the run's test split on both (``evaluate``'s scorers): accuracy for the
classifiers, bits per character for a language model; not translation (its test loss needs PyTorch).
"""

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from loguru import logger

from src.cli_runner import run_module_command

BACKENDS = ("onnx", "onnx-int8")
UNITS = {"encoder_classifier": "texts", "vit": "images", "decoder_lm": "tokens",
         "encoder_decoder": "sentences"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_OR_CHECKPOINT",
                        help="a checkpoint, a run folder, id or name, or 'latest'")
    parser.add_argument("--runs-dir", default="runs",
                        help="where run ids and names are looked up (default: runs)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed passes per setting; the median is reported")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32], help="default: 1 32")
    parser.add_argument("--items", type=int, default=64,
                        help="texts, images or sentences per pass (default 64); language model: prompts")
    parser.add_argument("--new-tokens", type=int, default=32,
                        help="tokens a language model generates per prompt (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per session (default 1)")
    parser.add_argument("--quality", action="store_true",
                        help="also score the run's test split on both backends")
    parser.add_argument("--max-items", type=int, default=None,
                        help="with --quality: score the first N texts, images or sentences only")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def load_both(checkpoint: Path, threads: int) -> dict:
    """backend -> ``InferenceModel`` of ``checkpoint`` on ONNX Runtime, ``threads`` threads per session."""
    from src.inference.loader import default_export_dir, load_for_inference
    from src.inference.onnx_backend import load_onnx_model, quantized_manifest, read_manifest

    load_for_inference(checkpoint, backend="onnx-int8")  # exports with --quantize int8 unless up to date
    folder = default_export_dir(checkpoint) if checkpoint.is_file() else checkpoint
    manifest = read_manifest(folder)
    models = {}
    for backend in BACKENDS:
        trained = load_for_inference(folder, backend=backend)
        graphs = quantized_manifest(manifest, "int8", folder) if backend == "onnx-int8" else manifest
        model = load_onnx_model(folder, graphs, trained.special_ids["pad"],
                                trained.config.model.max_positions,
                                threads=threads)
        models[backend] = replace(trained, model=model, path=checkpoint)
    return models


def workload(trained, items: int, new_tokens: int, batch_size: int) -> tuple[Callable[[], object], int]:
    """A pass of ``trained.family``'s work at ``batch_size``, and the units it produces (texts, tokens...)."""
    import torch

    from src.models.decoding import greedy_decode
    from src.models.sampling import generate

    generator = torch.Generator().manual_seed(0)
    model, cfg, family = trained.model, trained.config.model, trained.family
    if family == "vit":
        data = torch.randn(items, cfg.in_channels, cfg.image_size, cfg.image_size, generator=generator)
        batches = data.split(batch_size)
        return (lambda: [model(x) for x in batches]), items
    vocab = next(iter(trained.tokenizers.values())).get_vocab_size()
    if family == "decoder_lm":
        prompts = torch.randint(4, vocab, (items, 8), generator=generator).split(batch_size)
        work = items * new_tokens
        return (lambda: [generate(model, p, new_tokens, temperature=0.0) for p in prompts]), work
    if family == "encoder_decoder":
        ids = trained.special_ids
        sources = torch.randint(4, vocab, (items, 16), generator=generator).split(batch_size)
        return (lambda: [greedy_decode(model, s, bos_id=ids["bos"], eos_id=ids["eos"],
                                       max_new_tokens=trained.config.evaluation.max_new_tokens)
                         for s in sources]), items
    tokens = torch.randint(4, vocab, (items, cfg.max_positions), generator=generator)
    tokens[:, 0] = trained.special_ids["bos"]  # [CLS]
    batches = tokens.split(batch_size)
    return (lambda: [model(x) for x in batches]), items


def bench(checkpoint: Path, repeats: int, batch_sizes: list[int], items: int, new_tokens: int, threads: int,
          quality: bool, max_items: int | None) -> dict:
    """Median seconds and units/s per backend and batch size; with ``quality``, both backends' test
    metrics."""
    import torch

    if min(repeats, items, new_tokens, threads, *batch_sizes) < 1:
        raise ValueError(f"--repeats, --items, --new-tokens, --threads and --batch-sizes must be >= 1, got "
                         f"{repeats}, {items}, {new_tokens}, {threads}, {batch_sizes}")
    models = load_both(checkpoint, threads)
    family = models["onnx"].family
    unit = UNITS.get(family, "texts")
    rows, load_before = [], os.getloadavg()
    with torch.no_grad():
        for batch_size in batch_sizes:
            runs = {}
            for backend, trained in models.items():
                runs[backend], count = workload(trained, items, new_tokens, batch_size)
                runs[backend]()  # warm-up
            times = {backend: [] for backend in runs}
            for _ in range(repeats):
                for backend, run in runs.items():  # in turns: both see the same load
                    started = time.perf_counter()
                    run()
                    times[backend].append(time.perf_counter() - started)
            for backend in runs:
                median = statistics.median(times[backend])
                rows.append({"backend": backend, "batch_size": batch_size, "median_s": round(median, 4),
                             f"{unit}_per_s": round(count / median, 1)})
                logger.info("bench int8: {} batch {}: {:.3f} s median of {}", backend, batch_size, median,
                            repeats)
    result = {"checkpoint": str(checkpoint), "family": family, "unit": unit, "repeats": repeats,
              "items": items, "ort_threads": threads, "rows": rows,
              "speedup_int8_over_fp32": {b: _ratio(rows, b) for b in batch_sizes},
              "load_average": {"before": [round(x, 2) for x in load_before],
                               "after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()},
              "int8_export_check": _int8_record(checkpoint)}
    if quality:
        result["quality"] = split_quality(models, max_items)
    return result


def _int8_record(checkpoint: Path) -> dict:
    from src.inference.loader import default_export_dir
    from src.inference.onnx_backend import read_manifest

    folder = default_export_dir(checkpoint) if checkpoint.is_file() else checkpoint
    return read_manifest(folder)["quantized"]["int8"]["checked"]


def split_quality(models: dict, max_items: int | None) -> dict:
    """backend -> the run's test-split metrics (accuracy, or bpc); and their difference."""
    from src.inference.splits import score_split
    from src.runs import run_dir_of_checkpoint

    family = models["onnx"].family
    if family == "encoder_decoder":
        raise ValueError("--quality scores classifiers, language models and ViTs; a translation model's "
                         "test loss needs PyTorch")
    key = "bpc" if family == "decoder_lm" else "accuracy"
    scores = {}
    for backend, trained in models.items():
        started = time.perf_counter()
        metrics = score_split(trained, "test", run_dir_of_checkpoint(trained.path), max_items)
        scores[backend] = {key: metrics[key], "seconds": round(time.perf_counter() - started, 1)}
        logger.info("bench int8: {} test {} {:.4f}", backend, key, metrics[key])
    delta = scores["onnx-int8"][key] - scores["onnx"][key]
    return {"metric": key, **scores, "int8_minus_fp32": delta}


def _ratio(rows: list[dict], batch_size: int) -> float:
    seconds = {r["backend"]: r["median_s"] for r in rows if r["batch_size"] == batch_size}
    return round(seconds["onnx"] / seconds["onnx-int8"], 2)


def table(result: dict) -> str:
    unit = result["unit"]
    lines = [(f"{result['family']}: int8 against float32 on ONNX Runtime, {result['ort_threads']} thread(s), "
              f"median of {result['repeats']}"),
             (f"load average (1, 5, 15 min) before {result['load_average']['before']}, after "
              f"{result['load_average']['after']}, on {result['load_average']['cpus']} CPUs"),
             f"{'backend':<10} {'batch':>5} {'median s':>10} {unit + '/s':>12}"]
    lines += [f"{r['backend']:<10} {r['batch_size']:>5} {r['median_s']:>10.3f} {r[unit + '_per_s']:>12.1f}"
              for r in result["rows"]]
    lines += [f"batch {b}: int8 {s}x float32" for b, s in result["speedup_int8_over_fp32"].items()]
    check = result["int8_export_check"]
    lines.append(f"export check: largest |int8 - PyTorch| {check['max_abs_diff']:.3g} "
                 f"({check['max_rel_diff']:.2%} of the largest |logit|), top-1 agreement "
                 f"{check['argmax_agreement']:.2%}")
    if "quality" in result:
        q, key = result["quality"], result["quality"]["metric"]
        lines.append(f"test {key}: float32 {q['onnx'][key]:.4f}, int8 {q['onnx-int8'][key]:.4f} "
                     f"(int8 - float32: {q['int8_minus_fp32']:+.4f})")
    return "\n".join(lines)


def command(args: argparse.Namespace) -> tuple[int, str]:
    """Exit status and output (JSON or the table) of ``python -m src.export.bench_int8``."""
    from src.runs import resolve_checkpoint

    result = bench(resolve_checkpoint(args.run, args.runs_dir), args.repeats, args.batch_sizes, args.items,
                   args.new_tokens, args.threads, args.quality, args.max_items)
    return 0, json.dumps(result, indent=2) if args.json else table(result)


def main(argv: list[str] | None = None) -> int:
    return run_module_command("python -m src.export.bench_int8", add_arguments, command, argv,
                              __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
