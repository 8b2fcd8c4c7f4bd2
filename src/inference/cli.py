"""``translate`` and ``evaluate`` subcommands: each returns its output text; ``src.main`` prints it."""

import argparse
import sys
import time
from pathlib import Path

from loguru import logger

SPLITS = {"test": "test", "valid": "validation"}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_OR_CHECKPOINT",
                        help="a checkpoint file, a run folder, a run id or name under --runs-dir, or 'latest'")
    parser.add_argument("--runs-dir", default="runs", help="where run ids and names are looked up (default: runs)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the model runs (auto: CUDA if present)")


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                        help="torch (default), or onnx: the exported graphs on ONNX Runtime (CPU), exported "
                             "beside the checkpoint first if needed (python -m src.main export)")


def add_translate_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("text", nargs="*", help="sentences to translate; none: read standard input, one per line")
    parser.add_argument("--beam", type=int, default=1, help="beam size (1: greedy, the default)")
    parser.add_argument("--max-len", type=int, default=None, help="most tokens generated per sentence")
    parser.add_argument("--batch-size", type=int, default=32)
    add_backend_argument(parser)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--split", default="test",
                        help="test or valid (the run's own held-out split), or a .tsv/.csv/.jsonl/.parquet file of pairs")
    parser.add_argument("--max-sentences", type=int, default=None, help="score only the first N pairs")
    parser.add_argument("--output", default=None, help="metrics JSON to write (default: beside the run or checkpoint)")


def translate_command(args: argparse.Namespace) -> str:
    from src.inference.loader import load_for_inference
    from src.inference.translate import translate_texts
    from src.runs import resolve_checkpoint

    trained = load_for_inference(resolve_checkpoint(args.run, args.runs_dir), args.device, backend=args.backend)
    if trained.family != "encoder_decoder":
        raise ValueError(f"{trained.path} holds a {trained.family} model; translate needs a translation model")
    if not args.text and sys.stdin.isatty():
        logger.info("reading sentences from standard input, one per line; end with Ctrl-D")
    texts = list(args.text) if args.text else [line.rstrip("\n") for line in sys.stdin]
    outputs = translate_texts(trained, texts, beam=args.beam, max_len=args.max_len, batch_size=args.batch_size)
    return "\n".join(outputs)


def evaluate_command(args: argparse.Namespace) -> str:
    """Score a checkpoint on its run's test/valid split or on a file; print and write the metrics."""
    from src.evaluation.evaluate import save_metrics
    from src.inference.loader import load_for_inference
    from src.inference.translate import encoded_split, evaluate_split, read_pairs_file
    from src.runs import resolve_checkpoint, run_dir_of_checkpoint
    from src.storage import ensure_writable

    checkpoint = resolve_checkpoint(args.run, args.runs_dir)
    trained = load_for_inference(checkpoint, args.device)
    if trained.family != "encoder_decoder":
        raise ValueError(f"{checkpoint} holds a {trained.family} model; its test metrics are in the run's "
                         "evaluate/metrics.json (evaluate scores translation models so far)")
    run_dir = run_dir_of_checkpoint(checkpoint)
    if args.split in SPLITS:
        split = _run_split(run_dir, checkpoint, SPLITS[args.split])
        default_out = (run_dir / "evaluate" / f"metrics_{args.split}_{time.strftime('%Y%m%d-%H%M%S')}.json"
                       if run_dir else None)
    else:
        path = Path(args.split)
        if not path.is_file():
            raise FileNotFoundError(f"--split {args.split}: expected 'test', 'valid' or a file of sentence pairs")
        split = encoded_split(trained, *read_pairs_file(path, trained))
        default_out = path.with_name(f"{path.stem}.{checkpoint.stem}.metrics.json")
    out = Path(args.output) if args.output else (default_out or checkpoint.with_suffix(f".{args.split}.metrics.json"))
    ensure_writable(out.parent, "metrics folder")  # before the scoring, not after minutes of it
    result = evaluate_split(trained, split, args.max_sentences)
    metrics = result["metrics"] | {"checkpoint": str(checkpoint), "split": args.split, "step": trained.step}
    save_metrics(metrics, out)
    logger.info("metrics written to {}", out)
    return _metrics_text(metrics, out)


def _run_split(run_dir: Path | None, checkpoint: Path, name: str):
    from datasets import load_from_disk

    if run_dir is None:
        raise FileNotFoundError(f"{checkpoint} is not inside a run folder, so its {name} split is not at hand; "
                                "pass --split FILE with sentence pairs")
    encoded = run_dir / "tokenize" / "encoded"
    if not encoded.is_dir():
        raise FileNotFoundError(f"run {run_dir} has no encoded data at {encoded}; pass --split FILE")
    return load_from_disk(str(encoded))[name]


def _metrics_text(metrics: dict, path: Path) -> str:
    lines = [
        f"checkpoint:  {metrics['checkpoint']} (step {metrics['step']})",
        f"split:       {metrics['split']} ({metrics['n_sentences']} sentences)",
        f"BLEU:        {metrics['beam']['bleu']:.2f} (beam), {metrics['greedy']['bleu']:.2f} (greedy)",
        f"chrF:        {metrics['beam']['chrf']:.2f} (beam), {metrics['greedy']['chrf']:.2f} (greedy)",
        f"loss:        {metrics['test']['loss']:.4f} (perplexity {metrics['test']['perplexity']:.2f}, "
        f"token accuracy {metrics['test']['token_accuracy']:.3f})",
        f"written to:  {path}",
    ]
    return "\n".join(lines)
