"""Greedy decoding (translation) or generation (language model) on ONNX Runtime against PyTorch eager,
side by side in one run.

    python -m src.export.bench RUN_OR_CHECKPOINT [--sentences 100] [--new-tokens 64] [--repeats 5]
                               [--batch-sizes 1 32] [--json]

Translation: both backends decode the same sentences (the run's test split,
``src/runs/folders.py::run_test_sentences``, when the run folder has it, else a built-in handful repeated)
with the same ``translate`` loop (length-sorted batches) and ``greedy_decode``. Language model: both
generate ``--new-tokens`` tokens greedily after each of ``--sentences`` 8-token prompts with the same
``generate`` (tokens/s). Each (backend, batch size) is timed ``--repeats`` times after one warm-up pass, the
backends taking turns (paired: a burst of load on a shared machine hits both), and the median is reported
with the machine's load average before and after. ONNX Runtime gets as many threads as PyTorch
(``OMP_NUM_THREADS=1`` gives one each). The table also says whether the two backends produced the same tokens
for every sentence or prompt. The ONNX graphs are exported first if the checkpoint has no up-to-date export
(``load_for_inference(backend="onnx")``).
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
    parser.add_argument("--sentences", type=int, default=100,
                        help="sentences decoded per pass, or a language model's prompts (default 100)")
    parser.add_argument("--new-tokens", type=int, default=64,
                        help="tokens a language model generates per prompt (default 64)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed passes per setting; the median is reported")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32], help="default: 1 32")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def bench(checkpoint: Path, n_sentences: int, repeats: int, batch_sizes: list[int],
          new_tokens: int = 64) -> dict:
    """Median seconds and items/s per backend and batch size, and whether the backends' tokens are the same.

    Translation: greedy decoding of ``n_sentences`` test sources (sentences/s). Language model: greedy
    generation of ``new_tokens`` tokens after each of ``n_sentences`` 8-token prompts (tokens/s; the
    prompts of ``src/export/bench_int8.py``'s workload). ONNX Runtime runs with as many threads as PyTorch
    has (``torch.get_num_threads()``, e.g. ``OMP_NUM_THREADS=1``): one machine, the same cores for both.
    """
    import torch

    if n_sentences < 1 or repeats < 1 or min(batch_sizes) < 1 or new_tokens < 1:
        raise ValueError(f"--sentences, --repeats, --batch-sizes and --new-tokens must be >= 1, got "
                         f"{n_sentences}, {repeats}, {batch_sizes}, {new_tokens}")
    threads = torch.get_num_threads()
    models = _load_both(checkpoint, threads)
    family = models["torch"].family
    if family not in ("encoder_decoder", "decoder_lm"):
        raise ValueError(f"{checkpoint} holds a {family} model; the bench decodes translation models and "
                         "generates with language models (python -m src.export.bench_int8 times the others)")
    if family == "encoder_decoder":
        texts, source = sentences_of_run(checkpoint, n_sentences)
        work = _translation_work(models, texts)
        unit, size = "sentences", {"sentences": len(texts), "sentence_source": source,
                                   "max_new_tokens": models["torch"].config.evaluation.max_new_tokens}
    else:
        work = _generation_work(models, n_sentences, new_tokens)
        unit, size = "tokens", {"prompts": n_sentences, "prompt_tokens": 8, "new_tokens": new_tokens}
    rows, same, load_before = [], {}, os.getloadavg()
    with torch.no_grad():
        for batch_size in batch_sizes:
            runs = {name: (lambda make=make, b=batch_size: make(b)) for name, make in work.items()}
            outputs = {name: run() for name, run in runs.items()}  # warm-up, and the tokens compared
            identical = sum(t == o for t, o in zip(outputs["torch"], outputs["onnx"], strict=True))
            same[batch_size] = f"{identical}/{len(outputs['torch'])}"
            times = {name: [] for name in runs}
            for _ in range(repeats):
                for name, run in runs.items():  # in turns, so that both backends see the same load
                    started = time.perf_counter()
                    produced = run()
                    times[name].append(time.perf_counter() - started)
            # a language model's rows: the 8 prompt tokens, then the generated ones
            count = sum(len(row) - 8 for row in produced) if unit == "tokens" else len(produced)
            for name in runs:
                median = statistics.median(times[name])
                rows.append({"backend": name, "batch_size": batch_size, "median_s": round(median, 4),
                             f"{unit}_per_s": round(count / median, 1)})
                logger.info("bench: {} batch {}: {:.3f} s median of {}", name, batch_size, median, repeats)
    return {"checkpoint": str(checkpoint), "family": family, "unit": unit, **size, "repeats": repeats,
            "torch_threads": threads, "ort_threads": threads, "rows": rows,
            "load_average": {"before": [round(x, 2) for x in load_before],
                             "after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()},
            "speedup_onnx_over_torch": {b: _ratio(rows, b) for b in batch_sizes},
            "identical_greedy_outputs": same}


def _load_both(checkpoint: Path, threads: int) -> dict:
    """backend ("torch", "onnx") -> the checkpoint's ``InferenceModel``, ONNX Runtime with ``threads``
    threads per session (exported first unless the export is up to date)."""
    from dataclasses import replace

    from src.inference.loader import default_export_dir, load_for_inference
    from src.inference.onnx_backend import load_onnx_model, read_manifest

    onnx = load_for_inference(checkpoint, backend="onnx")
    folder = default_export_dir(checkpoint) if checkpoint.is_file() else checkpoint
    model = load_onnx_model(folder, read_manifest(folder), onnx.special_ids["pad"],
                            onnx.config.model.max_positions, threads=threads)
    return {"torch": load_for_inference(checkpoint, "cpu"), "onnx": replace(onnx, model=model)}


def _translation_work(models: dict, texts: list[str]) -> dict:
    """backend -> (batch size -> the greedy translations of ``texts``), the loop ``evaluate`` runs."""
    from src.evaluation.evaluate import translate
    from src.inference.translate import decoder_for, encode_sources

    sources = encode_sources(models["torch"], texts)
    limit = models["torch"].config.evaluation.max_new_tokens
    return {name: (lambda batch_size, t=trained: translate(t.model, sources, decoder_for(t, beam=1),
                                                            batch_size, t.device, "bench", limit))
            for name, trained in models.items()}


def _generation_work(models: dict, n_prompts: int, new_tokens: int) -> dict:
    """backend -> (batch size -> the greedy continuations, one token list (8 + new_tokens) per prompt)."""
    from src.export.bench_int8 import workload

    def rows(trained, batch_size: int) -> list[list[int]]:
        return [row for batch in workload(trained, n_prompts, new_tokens, batch_size)[0]() for row in
                batch.tolist()]

    return {name: (lambda batch_size, t=trained: rows(t, batch_size)) for name, trained in models.items()}


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
    unit = result["unit"]
    work = (f"greedy decoding, {result['sentences']} sentences from {result['sentence_source']}"
            if unit == "sentences" else
            f"greedy generation, {result['prompts']} prompts of {result['prompt_tokens']} tokens, "
            f"{result['new_tokens']} new tokens each")
    lines = [(f"{work}, median of {result['repeats']}, threads: torch {result['torch_threads']}, "
              f"ONNX Runtime {result['ort_threads']}"),
             (f"load average (1, 5, 15 min) before {result['load_average']['before']}, after "
              f"{result['load_average']['after']}, on {result['load_average']['cpus']} CPUs"),
             f"{'backend':<8} {'batch':>5} {'median s':>10} {unit + '/s':>12}"]
    lines += [f"{r['backend']:<8} {r['batch_size']:>5} {r['median_s']:>10.3f} {r[unit + '_per_s']:>12.1f}"
              for r in result["rows"]]
    lines += [f"batch {b}: onnx {s}x torch, identical outputs {result['identical_greedy_outputs'][b]}"
              for b, s in result["speedup_onnx_over_torch"].items()]
    return "\n".join(lines)


def command(args: argparse.Namespace) -> tuple[int, str]:
    """Exit status and output (JSON or the table) of ``python -m src.export.bench``."""
    from src.runs import resolve_checkpoint

    result = bench(resolve_checkpoint(args.run, args.runs_dir), args.sentences, args.repeats,
                   args.batch_sizes, args.new_tokens)
    return 0, json.dumps(result, indent=2) if args.json else table(result)


def main(argv: list[str] | None = None) -> int:
    return run_module_command("python -m src.export.bench", add_arguments, command, argv,
                              __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
