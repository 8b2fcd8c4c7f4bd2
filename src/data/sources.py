"""Readers for parallel text: Hugging Face datasets and local TSV, CSV, JSONL and Parquet files.

Each reader returns ``RawPairs``: the source and target value of every input row (not yet
cleaned; ``None`` or non-text values are counted later as ``not_text``) plus rows it could not
read at all, counted by reason. Text files are decoded with ``surrogateescape`` so that bytes that
are not UTF-8 survive as lone surrogates; the cleaner drops those rows as ``not_utf8``.
"""

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from src.config.data import DataConfig

LOCAL_SUFFIXES = (".tsv", ".csv", ".jsonl", ".parquet")


@dataclass
class RawPairs:
    """Uncleaned rows; ``len(src) + sum(dropped)`` is the number of input rows."""

    src: list[Any] = field(default_factory=list)
    tgt: list[Any] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)


class ColumnError(KeyError):
    """A mapped column (or language key) does not exist; the message lists what does."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def resolve_columns(columns: list[str], cfg: DataConfig) -> tuple[str, str] | str:
    """``(src_column, tgt_column)`` for plain columns, or the name of the translation dict column."""
    if cfg.src_column is not None:
        missing = [c for c in (cfg.src_column, cfg.tgt_column) if c not in columns]
        if missing:
            raise ColumnError(f"column(s) {missing} not found; the data has columns {columns}")
        return cfg.src_column, cfg.tgt_column
    if cfg.translation_column is not None and cfg.translation_column in columns:
        return cfg.translation_column
    raise ColumnError(
        f"no column mapping fits: translation_column={cfg.translation_column!r} is not among the "
        f"columns {columns}; set data.src_column and data.tgt_column to two of them"
    )


def pairs_from_columns(columns: dict[str, list], cfg: DataConfig) -> RawPairs:
    """Apply the column mapping to column-oriented data (one list per column)."""
    mapping = resolve_columns(list(columns), cfg)
    if isinstance(mapping, tuple):
        return RawPairs(src=list(columns[mapping[0]]), tgt=list(columns[mapping[1]]))
    return _pairs_from_translation(columns[mapping], cfg)


def _pairs_from_translation(records: list, cfg: DataConfig) -> RawPairs:
    """``{"translation": {"de": ..., "en": ...}}`` records; a missing language key is ``None``."""
    first = next((r for r in records if isinstance(r, dict)), None)
    if first is not None and not {cfg.src_lang, cfg.tgt_lang} <= set(first):
        raise ColumnError(
            f"column {cfg.translation_column!r} has languages {sorted(first)}, "
            f"expected keys {cfg.src_lang!r} and {cfg.tgt_lang!r}"
        )
    out = RawPairs()
    for record in records:
        record = record if isinstance(record, dict) else {}
        out.src.append(record.get(cfg.src_lang))
        out.tgt.append(record.get(cfg.tgt_lang))
    return out


def read_hf(cfg: DataConfig) -> RawPairs:
    """``datasets.load_dataset(hf_name, hf_config, split=hf_split)`` through the column mapping."""
    import datasets

    logger.info("loading Hugging Face dataset {} ({}), split {}", cfg.hf_name, cfg.hf_config, cfg.hf_split)
    ds = datasets.load_dataset(cfg.hf_name, cfg.hf_config, split=cfg.hf_split)
    if cfg.max_rows is not None:
        ds = ds.select(range(min(cfg.max_rows, len(ds))))
    mapping = resolve_columns(ds.column_names, cfg)
    names = list(mapping) if isinstance(mapping, tuple) else [mapping]
    return pairs_from_columns({name: ds[name][:] for name in names}, cfg)


def read_local(cfg: DataConfig) -> RawPairs:
    """A local ``.tsv``/``.csv`` (header row), ``.jsonl`` or ``.parquet`` file."""
    path = Path(cfg.local_path)
    if not path.is_file():
        raise FileNotFoundError(f"local corpus file not found: {path} (data.local_path)")
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise ValueError(f"unsupported file type {suffix!r} for {path}; expected one of {LOCAL_SUFFIXES}")
    logger.info("reading local {} file {}", suffix, path)
    if suffix == ".parquet":
        return _read_parquet(path, cfg)
    text = path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    if suffix == ".jsonl":
        return _read_jsonl(text, cfg)
    return _read_delimited(text, "\t" if suffix == ".tsv" else ",", cfg)


def _read_parquet(path: Path, cfg: DataConfig) -> RawPairs:
    import pyarrow.parquet as pq

    columns = pq.read_schema(path).names
    mapping = resolve_columns(columns, cfg)
    names = list(mapping) if isinstance(mapping, tuple) else [mapping]
    table = pq.read_table(path, columns=names)
    if cfg.max_rows is not None:
        table = table.slice(0, cfg.max_rows)
    return pairs_from_columns({name: table.column(name).to_pylist() for name in names}, cfg)


def _read_delimited(text: str, delimiter: str, cfg: DataConfig) -> RawPairs:
    """TSV is read without quoting (quotes are ordinary text there); CSV with standard quoting."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    header = next(reader, None)
    if header is None:
        raise ValueError("the file is empty: expected a header row naming the columns")
    src_col, tgt_col = _plain_columns(header, cfg)
    i, j = header.index(src_col), header.index(tgt_col)
    out = RawPairs()
    for n, row in enumerate(reader):
        if cfg.max_rows is not None and n >= cfg.max_rows:
            break
        if len(row) != len(header):
            out.dropped["malformed_row"] += 1
            continue
        out.src.append(row[i])
        out.tgt.append(row[j])
    return out


def _plain_columns(header: list[str], cfg: DataConfig) -> tuple[str, str]:
    mapping = resolve_columns(header, cfg)
    if not isinstance(mapping, tuple):
        raise ColumnError(
            f"a TSV/CSV cell cannot hold a translation dict; set data.src_column and data.tgt_column "
            f"to two of the columns {header}"
        )
    return mapping


def _read_jsonl(text: str, cfg: DataConfig) -> RawPairs:
    records: list[dict] = []
    out = RawPairs()
    for line in text.splitlines():
        if not line.strip():
            continue
        if cfg.max_rows is not None and len(records) + out.dropped.total() >= cfg.max_rows:
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            out.dropped["malformed_row"] += 1
            continue
        if not isinstance(record, dict):
            out.dropped["malformed_row"] += 1
            continue
        records.append(record)
    if not records:
        raise ValueError(f"no JSON object lines found (malformed lines: {out.dropped['malformed_row']})")
    mapping = resolve_columns(list(records[0]), cfg)
    names = list(mapping) if isinstance(mapping, tuple) else [mapping]
    pairs = pairs_from_columns({name: [r.get(name) for r in records] for name in names}, cfg)
    pairs.dropped.update(out.dropped)
    return pairs
