"""``translate`` and ``evaluate`` subcommands: each returns its output (translate: line by line);
``src.main`` prints it."""

import argparse
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from loguru import logger

from src.arguments import POSITIVE_INT, output_file

SPLITS = {"test": "test", "valid": "validation"}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_OR_CHECKPOINT",
                        help="a checkpoint file, a run folder, a run id or name under --runs-dir, "
                             "or 'latest'")
    parser.add_argument("--runs-dir", default="runs",
                        help="where run ids and names are looked up (default: runs)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the model runs (auto: CUDA if present)")


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx", "onnx-int8"],
                        help="torch (default), or onnx: the exported graphs on ONNX Runtime (CPU), exported "
                             "beside the checkpoint first if needed (python -m src.main export); onnx-int8: "
                             "their int8 version (export --quantize int8)")


def add_translate_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("text", nargs="*",
                        help="sentences to translate; none: read standard input, one per line")
    parser.add_argument("--beam", type=POSITIVE_INT, default=1, help="beam size (1: greedy, the default)")
    parser.add_argument("--max-len", type=POSITIVE_INT, default=None,
                        help="most tokens generated per sentence")
    parser.add_argument("--batch-size", type=POSITIVE_INT, default=32,
                        help="sentences decoded together (default 32)")
    add_backend_argument(parser)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--split", default="test",
                        help="test or valid (the run's own held-out split), or a file of the model's kind: "
                             "sentence pairs (.tsv/.csv/.jsonl/.parquet) for translation, labelled texts "
                             "(the same kinds) for a text classifier, plain text (.txt) for a language "
                             "model, an image folder (one subfolder per class) or an IDX images file for a "
                             "ViT")
    parser.add_argument("--max-sentences", type=POSITIVE_INT, default=None, metavar="N",
                        help="score only the first N pairs")
    parser.add_argument("--output", type=output_file, default=None,
                        help="metrics JSON to write (default: the run folder's evaluate/, else beside the "
                             "checkpoint)")
    parser.add_argument("--block-size", type=POSITIVE_INT, default=None, metavar="N",
                        help="language models: score in windows of N tokens (default: the training "
                             "window); longer windows test how the positions extrapolate, up to "
                             "model.max_positions")
    add_backend_argument(parser)


def translate_command(args: argparse.Namespace) -> Iterator[str]:
    """One translation per sentence given, or per line of standard input as the lines arrive (printed by
    ``src.main``).

    A line of standard input that is not UTF-8 is named on stderr and gets an empty line, so that
    output line N still answers input line N; the valid lines are translated, and a ValueError
    naming the bad lines ends the command (exit status 1) once all are read.
    """
    from src.inference.loader import load_for_inference
    from src.inference.translate import translate_texts
    from src.runs import resolve_checkpoint

    trained = load_for_inference(resolve_checkpoint(args.run, args.runs_dir), args.device,
                                 backend=args.backend)
    if trained.family != "encoder_decoder":
        raise ValueError(
            f"{trained.path} holds a {trained.family} model; translate needs a translation model")

    def translated(texts: list[str]) -> list[str]:
        return translate_texts(trained, texts, beam=args.beam, max_len=args.max_len,
                               batch_size=args.batch_size)

    if args.text:
        yield from translated(list(args.text))
        return
    if sys.stdin.isatty():
        logger.info("reading sentences from standard input, one per line; end with Ctrl-D")
    bad = []
    for batch in stdin_lines(sys.stdin.buffer, args.batch_size):
        texts = []
        for number, line in batch:
            try:
                texts.append(utf8_text(line, "standard input", first_line=number))
            except ValueError as err:
                logger.error(f"{err}; its output line is left empty")
                bad.append(number)
                texts.append("")
        yield from translated(texts)
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise ValueError(f"standard input: {len(bad)} line(s) not UTF-8 (line {shown}), left empty in the "
                         "output; the other lines are translated")


def stdin_lines(stream: BinaryIO, batch_size: int) -> Iterator[list[tuple[int, bytes]]]:
    """The lines of ``stream`` as they arrive, numbered from 1, without their line ending: every complete
    line read so far, at most ``batch_size`` at a time.

    ``read1`` returns what one read of the pipe or terminal gives, without waiting for a full buffer
    (as iterating a text stream does): a typed line is translated as soon as its Enter arrives, and a
    file piped in still comes in full batches. The bytes are decoded by the caller, line by line, so
    that one line that is not UTF-8 spoils only itself.
    """
    pending, number = b"", 0
    while chunk := stream.read1(1 << 16):
        *lines, pending = (pending + chunk).split(b"\n")
        for start in range(0, len(lines), batch_size):
            batch = lines[start:start + batch_size]
            yield [(number + i + 1, line.removesuffix(b"\r")) for i, line in enumerate(batch)]
            number += len(batch)
    if pending:  # a last line without its newline
        yield [(number + 1, pending.removesuffix(b"\r"))]


def utf8_text(data: bytes, what: str, first_line: int = 1) -> str:
    """``data`` decoded as UTF-8, else a ValueError naming ``what``, the line (``data`` starts at
    ``first_line``), the column and the byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data.count(b"\n", 0, err.start)
        # 1-based: rfind gives -1 on the first line
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise ValueError(f"{what}, line {line}: not UTF-8 (byte {data[err.start]:#04x} at column "
                         f"{column})") from None


def evaluate_command(args: argparse.Namespace) -> str:
    """Score a checkpoint of any family on its run's test/valid split or on a file; print and write the
    metrics."""
    from src.evaluation.evaluate import save_metrics
    from src.inference.splits import score_split
    from src.inference.loader import load_for_inference
    from src.runs import resolve_checkpoint, run_dir_of_checkpoint
    from src.storage import ensure_writable

    checkpoint = resolve_checkpoint(args.run, args.runs_dir)
    run_dir = run_dir_of_checkpoint(checkpoint)
    out = Path(args.output) if args.output else metrics_path(checkpoint, run_dir, args.split)
    ensure_writable(out.parent, "metrics folder")  # before minutes of scoring, not after
    trained = load_for_inference(checkpoint, args.device, backend=args.backend)
    if trained.family == "encoder_decoder" and args.backend != "torch":
        # the ONNX graphs are the encoder and one decoding step: no teacher-forced pass for the test loss
        raise ValueError(f"evaluate --backend {args.backend} scores classifiers, language models and ViTs; a "
                         "translation model's test loss needs --backend torch (its ONNX decoding: "
                         "python -m src.export.bench)")
    split = args.split if args.split in SPLITS else str(Path(args.split).expanduser().resolve())
    metrics = score_split(trained, args.split, run_dir, args.max_sentences, args.block_size)
    metrics |= {"checkpoint": str(checkpoint), "family": trained.family, "split": split, "step": trained.step,
                "backend": args.backend}
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
            (f"split:       {metrics['split']} ({metrics['n_characters']:,} characters, "
             f"{metrics['n_tokens']:,} tokens, windows of {metrics['block_size']})"),
            f"bpc:         {metrics['bpc']:.4f}",
            f"loss:        {metrics['loss']:.4f} per token (perplexity {metrics['perplexity']:.2f})",
        ]
    elif metrics["family"] == "encoder_mlm":
        lines += [
            (f"split:       {metrics['split']} ({metrics['n_texts']} texts, {metrics['n_masked']:,} masked "
             "tokens)"),
            f"masked-token loss:     {metrics['loss']:.4f} (perplexity {metrics['perplexity']:.2f})",
            f"masked-token accuracy: {metrics['accuracy']:.4f}",
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
