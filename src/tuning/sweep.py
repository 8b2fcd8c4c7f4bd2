"""Tuning runs: train one configuration with tracking off, then score greedy BLEU on the *validation* split.

``python -m src.tuning.sweep NAME [--config FILE] [--threads N] [--sentences-only] [--out FILE] [overrides]``

The test split stays untouched for the pipeline's evaluate step; tuning reads validation only.
Prepared and tokenized data are cached under ``--work`` per data/tokenizer config, so a sweep
prepares each corpus once. Each run appends one JSON row (config, steps, seconds, valid loss,
BLEU, chrF, three sample outputs) to ``--out``. Runs train exactly ``training.max_steps`` steps
(``training.max_minutes`` is ignored): two runs sharing the machine each get less CPU, so rows
are compared at equal steps and their seconds are not the single-run figure.
"""

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

from loguru import logger


def prepared(cfg, work: Path) -> Path:
    """Encoded splits and tokenizer for ``cfg``'s data and tokenizer sections, built once."""
    from src.tuning.overhead import prepare

    key = json.dumps([cfg.data.model_dump(mode="json"), cfg.tokenizer.model_dump(mode="json")], sort_keys=True)
    out = work / hashlib.sha1(key.encode()).hexdigest()[:12]
    if not (out / "encoded").exists():
        prepare(cfg, out)
    return out


def run(name: str, cfg, work: Path, sentences_only: bool = False) -> dict:
    import torch
    from datasets import load_from_disk

    from src.config import validate_config
    from src.data.tokenizer import decode_ids, load_tokenizer
    from src.evaluation.evaluate import decode_greedy, score, translate
    from src.tasks.translation import ParallelCorpus, TranslationTask
    from src.tracking import NullTracker
    from src.training.trainer import Trainer

    data = cfg.model_dump(mode="json")
    data["tracking"]["enabled"] = False
    steps = data["training"]["max_steps"]
    # one validation, at the end; no wall-clock cap: runs sharing the machine are compared at equal steps
    data["training"].update(eval_every=steps, checkpoint_every=steps, max_minutes=None)
    cfg = validate_config(data)
    out = prepared(cfg, work)
    encoded = load_from_disk(str(out / "encoded"))
    tok = load_tokenizer(out / "tokenizer.json")
    train = encoded["train"]
    if sentences_only and "extra" in train.column_names:
        train = train.filter(lambda extra: not extra, input_columns="extra")
    corpus = ParallelCorpus.from_dataset(train, cfg.batching.upsample_primary)
    valid = encoded["validation"]
    task = TranslationTask(corpus, ParallelCorpus.from_dataset(valid), (tok.get_vocab_size(), tok.get_vocab_size()))
    with tempfile.TemporaryDirectory(prefix=f"sweep-{name}-") as run_dir:
        trainer = Trainer(cfg, task, Path(run_dir), NullTracker())
        start = time.perf_counter()
        result = trainer.fit()
        train_seconds = time.perf_counter() - start
    model = trainer.model.eval()
    start = time.perf_counter()
    ids = translate(model, list(valid["src_ids"]), decode_greedy, cfg.evaluation.batch_size, trainer.device, "greedy",
                    cfg.evaluation.max_new_tokens)
    hypotheses = [decode_ids(tok, row) for row in ids]
    scores = score(hypotheses, list(valid["tgt"]))
    return {"name": name, "sentences_only": sentences_only, "steps": result.steps, "train_seconds": round(train_seconds, 1),
            "threads": torch.get_num_threads(), "train_rows_per_epoch": len(corpus),
            "valid_loss": round(result.best_valid_loss, 4), "valid_bleu_greedy": round(scores["bleu"], 2),
            "valid_chrf_greedy": round(scores["chrf"], 2), "decode_seconds": round(time.perf_counter() - start, 1),
            "samples": hypotheses[:3], "config": cfg.model_dump(mode="json")}


def main(argv: list[str] | None = None) -> int:
    import torch

    from src.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="python -m src.tuning.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("--config", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--sentences-only", action="store_true", help="drop the extra (Ding phrase) rows from train")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "stepwise-sweep")
    parser.add_argument("--out", type=Path, default=Path("sweep.jsonl"))
    parser.add_argument("overrides", nargs="*", help="section.key=value")
    args = parser.parse_intermixed_args(argv)  # options may follow the overrides
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        logger.error(str(err))
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    row = run(args.name, cfg, args.work, args.sentences_only)
    with args.out.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    logger.info(f"{args.name}: {row['steps']} steps in {row['train_seconds']} s, valid loss {row['valid_loss']}, "
                f"greedy BLEU {row['valid_bleu_greedy']}, chrF {row['valid_chrf_greedy']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
