"""Read a corpus, clean it, split it by source hash, and save it with its data card.

Usage::

    card = prepare_corpus(DataConfig(), Path("runs/default/data"))
    # runs/default/data/dataset (DatasetDict: train/validation/test, columns src/tgt),
    # data_card.json, data_card.md, length_histogram.png
"""

import shutil
import time
from collections import Counter
from pathlib import Path

from loguru import logger

from src.config.data import DataConfig
from src.data.card import examples, length_summary, save_card
from src.data.cleaning import SPLITS, CleanPairs, assign_splits, clean_pairs
from src.data.ding import read_ding
from src.data.sources import RawPairs, read_hf, read_local

SENTENCE_RULE = (
    "both sides start with an upper-case letter or digit and end with . ! or ? (optionally a closing "
    "quote), neither ends with a placeholder abbreviation (etw., jdn., sth., ...), the German side has "
    ">= {min_words} words; annotations {{}} [] <> () and /ACRONYMS/ removed; alternatives split at ';' "
    "and combined"
)


class EmptyCorpusError(ValueError):
    """Nothing is left after cleaning; the message gives the drop counts."""


class SplitTooSmallError(ValueError):
    """A split is empty or too small to train on or to measure with; the message names it and its size."""


NOT_UTF8_WARN_FRACTION = 0.01


def check_split_sizes(counts: dict[str, int], cfg: DataConfig) -> None:
    """Fail before training when validation or test cannot measure anything (or train is empty).

    ``counts``: pairs per split, as in the data card. The ``data`` command and the library accept
    any split sizes; the pipeline's data step calls this, since training needs all three.
    """
    kept = sum(counts.values())
    need = {"train": 1, "validation": cfg.min_eval_pairs, "test": cfg.min_eval_pairs}
    fraction = {"validation": cfg.valid_fraction, "test": cfg.test_fraction}
    for name, minimum in need.items():
        size = counts.get(name, 0)
        if size < minimum:
            hint = (f"use more data, raise data.{'valid' if name == 'validation' else 'test'}_fraction "
                    f"(now {fraction[name]}) or lower data.min_eval_pairs (now {cfg.min_eval_pairs})"
                    if name in fraction else "lower data.valid_fraction and data.test_fraction")
            raise SplitTooSmallError(f"the {name} split has {size} pairs of {kept} kept, expected at least "
                                     f"{minimum}: {hint}")


def warn_not_utf8(dropped: Counter, input_rows: int, description: str) -> None:
    """A loud hint when a file is largely in another encoding (its rows are dropped as ``not_utf8``)."""
    count = dropped.get("not_utf8", 0)
    if input_rows and count / input_rows >= NOT_UTF8_WARN_FRACTION:
        logger.warning(
            "{} of {} rows ({:.0%}) of {} are not valid UTF-8 and were dropped; if the file is in another "
            "encoding, re-encode it first, e.g. iconv -f latin1 -t utf-8 in.tsv > out.tsv",
            count, input_rows, count / input_rows, description,
        )


def read_source(cfg: DataConfig) -> tuple[RawPairs, RawPairs | None, dict]:
    """Main rows, train-only extra rows (Ding phrases, or None) and a description of the source."""
    if cfg.source == "hf":
        return (
            read_hf(cfg),
            None,
            {"description": f"Hugging Face {cfg.hf_name} ({cfg.hf_config}) {cfg.hf_split}"},
        )
    if cfg.source == "local":
        return read_local(cfg), None, {"description": f"local file {cfg.local_path}"}
    ding = read_ding(
        cfg.ding_path,
        min_words=cfg.ding_min_words,
        with_phrases=cfg.ding_extra_train_phrases,
        max_sentences=cfg.max_rows,
    )
    if cfg.src_lang == "en":
        ding.sentences = [(en, de) for de, en in ding.sentences]
        ding.phrases = [(en, de) for de, en in ding.phrases]
    main = RawPairs(
        src=[s for s, _ in ding.sentences], tgt=[t for _, t in ding.sentences], dropped=ding.dropped
    )
    source = {
        "description": f"Ding dictionary {cfg.ding_path} (sentence pairs)",
        "sentence_rule": SENTENCE_RULE.format(min_words=cfg.ding_min_words),
    }
    if not cfg.ding_extra_train_phrases:
        main.dropped["not_a_sentence"] += ding.phrase_rows
        return main, None, source
    extra = RawPairs(src=[s for s, _ in ding.phrases], tgt=[t for _, t in ding.phrases])
    return main, extra, source


def add_extra_train_pairs(
    splits: dict[str, CleanPairs], extra: RawPairs, seen: set[tuple[str, str]], cfg: DataConfig
) -> dict:
    """Append cleaned extra pairs to train, never one whose source is in validation or test."""
    cleaned = clean_pairs(extra.src, extra.tgt, cfg, seen=seen)
    held_out = set(splits["validation"].src) | set(splits["test"].src)
    dropped = Counter(cleaned.dropped)
    train = splits["train"]
    for s, t in zip(cleaned.src, cleaned.tgt):
        if s in held_out:
            dropped["source_in_eval"] += 1
            continue
        train.src.append(s)
        train.tgt.append(t)
    kept = len(extra.src) - dropped.total()
    return {"input_rows": len(extra.src), "kept": kept, "dropped": dict(sorted(dropped.items()))}


def build_card(
    main: RawPairs,
    splits: dict[str, CleanPairs],
    dropped: Counter,
    extra_report: dict | None,
    source: dict,
    cfg: DataConfig,
) -> dict:
    """``counts`` (pairs per split), ``dropped`` (rows by reason), ``train_extra_phrases``, length
    histograms, examples and config; ``input_rows == kept_rows + dropped_rows``, extra rows included."""
    input_rows = len(main.src) + main.dropped.total() + (extra_report or {}).get("input_rows", 0)
    kept = sum(len(part) for part in splits.values())
    return {
        "source": source,
        "input_rows": input_rows,
        "kept_rows": kept,
        "dropped_rows": dropped.total(),
        "dropped": dict(sorted(dropped.items())),
        "counts": {name: len(splits[name]) for name in SPLITS},
        "train_extra_phrases": extra_report,
        "length_histograms": {
            name: {"src": length_summary(splits[name].src), "tgt": length_summary(splits[name].tgt)}
            for name in SPLITS
        },
        "examples": {name: examples(splits[name].src, splits[name].tgt) for name in SPLITS},
        "config": cfg.model_dump(),
    }


def save_dataset(splits: dict[str, CleanPairs], path: Path, n_primary: dict[str, int] | None = None) -> None:
    """DatasetDict on disk with splits train/validation/test and columns src, tgt (strings) and
    extra (bool): False for the corpus's own pairs, True for rows past ``n_primary[split]`` (the
    Ding word/phrase pairs appended to train), so training can weigh the two kinds."""
    from datasets import Dataset, DatasetDict, Features, Value

    features = Features({"src": Value("string"), "tgt": Value("string"), "extra": Value("bool")})
    n_primary = n_primary or {}
    dataset = DatasetDict(
        {
            name: Dataset.from_dict(
                {"src": part.src, "tgt": part.tgt,
                 "extra": [i >= n_primary.get(name, len(part)) for i in range(len(part))]},
                features=features,
            )
            for name, part in splits.items()
        }
    )
    if path.exists():
        shutil.rmtree(path)
    # an empty split saved with 0 shards cannot be loaded again; give it one
    dataset.save_to_disk(str(path), num_shards={name: 1 for name, part in dataset.items() if len(part) == 0})


def prepare_corpus(cfg: DataConfig, out_dir: Path) -> dict:
    """Read, clean, split and save; returns the data card (also written to ``out_dir``)."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    main, extra, source = read_source(cfg)
    seen: set[tuple[str, str]] = set()
    cleaned = clean_pairs(main.src, main.tgt, cfg, seen=seen)
    if len(cleaned) == 0:
        raise EmptyCorpusError(
            f"no pairs left after cleaning {source['description']}: expected at least 1, got 0 of "
            f"{len(main.src) + main.dropped.total()} input rows; dropped by reason "
            f"{dict(main.dropped + cleaned.dropped)}"
        )
    warn_not_utf8(main.dropped + cleaned.dropped, len(main.src) + main.dropped.total(), source["description"])
    splits = assign_splits(cleaned, cfg)
    n_primary = {name: len(part) for name, part in splits.items()}
    extra_report = add_extra_train_pairs(splits, extra, seen, cfg) if extra is not None else None
    dropped = main.dropped + cleaned.dropped + Counter((extra_report or {}).get("dropped", {}))
    card = build_card(main, splits, dropped, extra_report, source, cfg)
    save_dataset(splits, out_dir / "dataset", n_primary)
    card["seconds"] = round(time.perf_counter() - start, 2)
    save_card(card, out_dir)
    logger.info(
        "prepared {}: {} of {} rows kept, splits {}, dropped {}",
        source["description"],
        card["kept_rows"],
        card["input_rows"],
        card["counts"],
        card["dropped"],
    )
    return card
