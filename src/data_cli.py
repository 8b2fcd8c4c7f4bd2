"""``data`` command: prepare the corpus, train and apply the tokenizer, print the figures.

    python -m src.data_cli [--config FILE] [--out-dir DIR] [section.key=value ...]
    python -m src.data_cli data.ding_extra_train_phrases=true

Figures: pairs per split, drops by reason, tokenisation seconds (BPE training + encoding +
saving), and padding efficiency of the token-budget sampler against random batches with the
same mean number of pairs per batch. Written to ``OUT/figures.json`` as well.
"""

import argparse
import json
import time
from pathlib import Path

from loguru import logger

from src.arguments import output_folder
from src.config import ConfigError
from src.experiment import ExperimentConfig, apply_overrides, load_config, validate_config
from src.config.files import default_config_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML/JSON config (default: config/default_config.*)")
    parser.add_argument(
        "--out-dir", type=output_folder, default=None,
                        help="output folder (default: <output_dir>/<run_name>/data)"
    )
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.max_rows=1000")


def load_experiment_config(path: str | None, overrides: list[str]) -> ExperimentConfig:
    """``load_config``, falling back to the built-in defaults while no default config file exists."""
    if path is None:
        try:
            default_config_path()
        except ConfigError:
            logger.warning("no config/default_config.* yet; using ExperimentConfig() defaults")
            return validate_config(apply_overrides({}, overrides), source="defaults + overrides")
    return load_config(path, overrides)


def batching_figures(train, cfg: ExperimentConfig) -> dict:
    """Padding efficiency of one epoch: token budget vs random batches of the same mean size."""
    from src.data.batching import build_batch_sampler, padding_efficiency, random_batches

    src_len, tgt_len = train["src_len"][:], train["tgt_len"][:]
    sampler = build_batch_sampler(
        train,
        cfg.batching.max_tokens,
        shuffle=cfg.batching.shuffle,
        seed=cfg.training.seed,
        bucket_size_multiplier=cfg.batching.bucket_size_multiplier,
    )
    budget = sampler.batches(0)
    mean_pairs = len(train) / len(budget)
    naive = random_batches(len(train), max(1, round(mean_pairs)), seed=cfg.training.seed)
    return {
        "max_tokens": cfg.batching.max_tokens,
        "batches": len(budget),
        "mean_pairs_per_batch": round(mean_pairs, 1),
        "padding_efficiency_token_budget": round(padding_efficiency(budget, src_len, tgt_len), 4),
        "padding_efficiency_random": round(padding_efficiency(naive, src_len, tgt_len), 4),
    }


def data_figures(cfg: ExperimentConfig, out_dir: Path) -> dict:
    """Prepare + tokenize + batch statistics; every artefact lands in ``out_dir``."""
    from datasets import load_from_disk

    from src.data.prepare import prepare_corpus
    from src.data.tokenizer import encode_corpus, train_tokenizer

    card = prepare_corpus(cfg.data, out_dir)
    dataset = load_from_disk(str(out_dir / "dataset"))
    start = time.perf_counter()
    paths = train_tokenizer(dataset, cfg.tokenizer, out_dir)
    trained = time.perf_counter()
    encoded, report = encode_corpus(dataset, paths, cfg.tokenizer, out_dir)
    done = time.perf_counter()
    return {
        "pairs_per_split": card["counts"],
        "input_rows": card["input_rows"],
        "dropped_by_reason": card["dropped"],
        "train_extra_phrases": (card["train_extra_phrases"] or {}).get("kept", 0),
        "prepare_seconds": card["seconds"],
        "tokenize_seconds": {
            "train_bpe": round(trained - start, 2),
            "encode": round(done - trained, 2),
            "total": round(done - start, 2),
        },
        "truncated": {
            k: {"src": r["src_truncated"], "tgt": r["tgt_truncated"]} for k, r in report["splits"].items()
        },
        "batching": batching_figures(encoded["train"], cfg),
        "tokenizer": {k: str(v) for k, v in paths.items()},
    }


def report(args: argparse.Namespace) -> str:
    """Prepare + tokenize per the config, save ``figures.json``; return the figures as JSON for the console.

    Raises ConfigError, FileNotFoundError, KeyError or ValueError for bad input (``src.main`` reports them).
    """
    import datasets

    datasets.disable_progress_bars()
    cfg = load_experiment_config(args.config, args.overrides)
    if cfg.task != "translation":  # its figures (pairs, padding efficiency) are those of parallel text
        raise ConfigError("the data command reports on translation corpora; this config has "
                          f"task={cfg.task!r}: its data_prep and tokenize steps run as part of `train` and "
                          "record their figures there")
    out_dir = Path(args.out_dir) if args.out_dir else cfg.run_dir / "data"
    text = json.dumps(data_figures(cfg, out_dir), indent=2)
    (out_dir / "figures.json").write_text(text, encoding="utf-8")
    return text
