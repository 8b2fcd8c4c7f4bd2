"""Corpus, cleaning, tokenizer and batching settings (pipeline steps: data prep, tokenization)."""

from typing import Literal

from pydantic import PositiveInt, confloat

from src.config.base import FrozenConfig


class DataConfig(FrozenConfig):
    """Where parallel text comes from and how it is cleaned and split."""

    source: Literal["ding", "hf", "local"] = "ding"
    src_lang: str = "de"
    tgt_lang: str = "en"
    # ding: Debian's trans-de-en package
    ding_path: str = "/usr/share/trans/de-en"
    # hf: any datasets.load_dataset(name, config, split=...)
    hf_name: str | None = None
    hf_config: str | None = None
    hf_split: str = "train"
    # local: .tsv, .csv, .jsonl or .parquet
    local_path: str | None = None
    # column mapping for hf/local: plain columns, or a "translation" dict column keyed by language
    src_column: str | None = None
    tgt_column: str | None = None
    translation_column: str | None = "translation"
    # cleaning (Sec. "Cleaning" of the data issue)
    min_chars: PositiveInt = 1
    max_chars: PositiveInt = 300
    max_length_ratio: confloat(gt=1.0) = 3.0
    # deterministic hash split
    valid_fraction: confloat(ge=0.0, lt=1.0) = 0.05
    test_fraction: confloat(ge=0.0, lt=1.0) = 0.05
    split_salt: str = "stepwise-v1"
    max_rows: PositiveInt | None = None


class TokenizerConfig(FrozenConfig):
    """Byte-pair encoding trained on the training split only."""

    vocab_size: PositiveInt = 8000
    joint: bool = True  # one vocabulary for both languages (needed for shared embeddings)
    min_frequency: PositiveInt = 2
    max_tokens_per_sentence: PositiveInt = 128


class BatchingConfig(FrozenConfig):
    """Token-budget batching, like fairseq's ``max_tokens``."""

    max_tokens: PositiveInt = 4096
    bucket_size_multiplier: PositiveInt = 100
    shuffle: bool = True
