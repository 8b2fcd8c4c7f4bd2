"""``translate`` and ``evaluate`` subcommands: each returns its output text; ``src.main`` prints it."""

import argparse
import re
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
                        help="test or valid (the run's own held-out split), or a file of the model's kind: "
                             "sentence pairs (.tsv/.csv/.jsonl/.parquet) for translation, labelled texts (the same "
                             "kinds) for a text classifier, plain text (.txt) for a language model, an image folder "
                             "(one subfolder per class) or an IDX images file for a ViT")
    parser.add_argument("--max-sentences", type=int, default=None, help="score only the first N pairs")
    parser.add_argument("--output", default=None,
                        help="metrics JSON to write (default: the run folder's evaluate/, else beside the checkpoint)")


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
    """Score a checkpoint of any family on its run's test/valid split or on a file; print and write the metrics."""
    from src.evaluation.evaluate import save_metrics
    from src.evaluation.splits import score_split
    from src.inference.loader import load_for_inference
    from src.runs import resolve_checkpoint, run_dir_of_checkpoint
    from src.storage import ensure_writable

    checkpoint = resolve_checkpoint(args.run, args.runs_dir)
    run_dir = run_dir_of_checkpoint(checkpoint)
    out = Path(args.output) if args.output else metrics_path(checkpoint, run_dir, args.split)
    ensure_writable(out.parent, "metrics folder")  # before minutes of scoring, not after
    trained = load_for_inference(checkpoint, args.device)
    split = args.split if args.split in SPLITS else str(Path(args.split).expanduser().resolve())
    metrics = score_split(trained, args.split, run_dir, args.max_sentences)
    metrics |= {"checkpoint": str(checkpoint), "family": trained.family, "split": split, "step": trained.step}
    save_metrics(metrics, out)
    logger.info("metrics written to {}", out)
    return _metrics_text(metrics, out)


def metrics_path(checkpoint: Path, run_dir: Path | None, split: str) -> Path:
    """Where ``evaluate`` writes: ``<run>/evaluate/metrics_<split or file name>_<time>.json``; a checkpoint
    outside a run folder gets ``<checkpoint>.<split or file name>.metrics.json`` beside it. Never beside
    the user's data file."""
    name = split if split in SPLITS else "file-" + re.sub(r"[^\w.-]", "_", Path(split).name)
    if run_dir is not None:
        return run_dir / "evaluate" / f"metrics_{name}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    return checkpoint.with_name(f"{checkpoint.stem}.{name}.metrics.json")


def _metrics_text(metrics: dict, path: Path) -> str:
    """What the console shows: the family's headline metrics, then where the JSON went."""
    lines = [f"checkpoint:  {metrics['checkpoint']} (step {metrics['step']})"]
    if metrics["family"] == "encoder_decoder":
        lines += [
            f"split:       {metrics['split']} ({metrics['n_sentences']} sentences)",
            f"BLEU:        {metrics['beam']['bleu']:.2f} (beam), {metrics['greedy']['bleu']:.2f} (greedy)",
            f"chrF:        {metrics['beam']['chrf']:.2f} (beam), {metrics['greedy']['chrf']:.2f} (greedy)",
            f"loss:        {metrics['test']['loss']:.4f} (perplexity {metrics['test']['perplexity']:.2f}, "
            f"token accuracy {metrics['test']['token_accuracy']:.3f})",
        ]
    elif metrics["family"] == "decoder_lm":
        lines += [
            f"split:       {metrics['split']} ({metrics['n_characters']:,} characters, {metrics['n_tokens']:,} tokens)",
            f"bpc:         {metrics['bpc']:.4f}",
            f"loss:        {metrics['loss']:.4f} per token (perplexity {metrics['perplexity']:.2f})",
        ]
    else:
        count = metrics.get("n_texts", metrics.get("n_images"))
        lines += [
            f"split:       {metrics['split']} ({count} {'texts' if 'n_texts' in metrics else 'images'})",
            f"accuracy:    {metrics['accuracy']:.4f}",
            f"macro-F1:    {metrics['macro_f1']:.4f}",
            f"loss:        {metrics['loss']:.4f}",
        ]
    return "\n".join([*lines, f"written to:  {path}"])
