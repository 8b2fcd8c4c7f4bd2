"""Corpus, cleaning, tokenizer and batching settings (pipeline steps: data prep, tokenization)."""

import re
from typing import Literal

from pydantic import NonNegativeInt, PositiveInt, confloat, model_validator

from src.config.base import FrozenConfig

# ByteLevel BPE starts from 256 byte symbols plus the 4 special tokens (src/data/tokenizer.py).
MIN_VOCAB_SIZE = 256 + 4


class DataConfig(FrozenConfig):
    """Where parallel text comes from and how it is cleaned and split."""

    # ding/hf/local: parallel text for translation; imdb/hf/local: labelled text for classification;
    # listops: generated ListOps expressions (classification); prose/hf/local: running text for
    # language modelling; fashion_mnist: images; clearml: a ClearML Dataset (clearml_dataset), read as
    # `local` reads a file (README, "Datasets")
    source: Literal["ding", "hf", "local", "imdb", "listops", "prose", "fashion_mnist", "clearml"] = "ding"
    # clearml: the dataset's id, or "project/name" (its latest finalized version) or "project/name@version";
    # local_path, if set, is then a path inside the dataset
    clearml_dataset: str | None = None
    src_lang: str = "de"
    tgt_lang: str = "en"
    # ding: Debian's trans-de-en package
    ding_path: str = "/usr/share/trans/de-en"
    # a German sentence needs at least this many words (rule in src/data/ding.py)
    ding_min_words: PositiveInt = 2
    # add the dictionary's word/phrase pairs (one per aligned field) to the training split only
    ding_extra_train_phrases: bool = False
    # hf: any datasets.load_dataset(name, config, split=...)
    hf_name: str | None = None
    hf_config: str | None = None
    hf_split: str = "train"
    # local: .tsv, .csv (both with a header row), .jsonl or .parquet
    local_path: str | None = None
    # column mapping for hf/local: plain columns, or a "translation" dict column keyed by language
    src_column: str | None = None
    tgt_column: str | None = None
    translation_column: str | None = "translation"
    # classification: the text and label columns of hf/local data; the IMDB CSV (default: the cache
    # that .ci/install fills, src/data/text_classification.py)
    text_column: str = "text"
    label_column: str = "label"
    imdb_path: str | None = None
    # listops: expressions generated as the Long Range Arena does (src/data/listops.py), labelled with
    # their value 0-9; lengths in tokens (operators, "]" and digits), both bounds included: LRA keeps
    # 500 < length < 2000. max_rows does not apply: listops_rows is how many are made
    listops_rows: PositiveInt = 2000
    listops_min_length: PositiveInt = 501
    listops_max_length: PositiveInt = 1999
    listops_max_depth: PositiveInt = 10
    listops_max_args: PositiveInt = 10
    listops_seed: NonNegativeInt = 0
    # True: LRA's TSV text, the binarised tree in "( ... )" (about twice the tokens again)
    listops_parentheses: bool = False
    # prose: the offline English corpora to join (src/data/prose.py; .ci/install fetches them)
    prose_corpora: tuple[Literal["austen", "brown"], ...] = ("austen", "brown")
    # language modelling: join a paragraph's lines with spaces (true: prose hard-wrapped at a fixed
    # width) or keep its line breaks (false: verse, code, dialogue). None: each source's default:
    # a local .txt keeps them; Austen's printed lines and Hugging Face rows are joined, as before
    join_lines: bool | None = None
    # fashion_mnist: the IDX files of Debian's dataset-fashion-mnist
    fashion_mnist_path: str = "/usr/share/datasets/fashion-mnist"
    # images: light training-time augmentation (src/data/augmentation.py)
    augmentation: Literal["none", "crop", "crop_flip"] = "none"
    # cleaning (Sec. "Cleaning" of the data issue); lengths in characters after normalisation
    min_chars: PositiveInt = 1
    max_chars: PositiveInt = 300
    max_length_ratio: confloat(gt=1.0) = 3.0
    # deterministic hash split
    valid_fraction: confloat(ge=0.0, lt=1.0) = 0.05
    test_fraction: confloat(ge=0.0, lt=1.0) = 0.05
    split_salt: str = "stepwise-v1"
    # exact validation/test sizes (rows), instead of the fractions
    valid_count: PositiveInt | None = None
    test_count: PositiveInt | None = None
    # fewest pairs the validation and test splits may hold: fewer is an error before training
    min_eval_pairs: PositiveInt = 8
    # first rows read from the source (Ding: first sentence pairs, phrases from the same lines); None: all
    max_rows: PositiveInt | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "DataConfig":
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"valid_fraction + test_fraction must be < 1 to leave a training split (got "
                f"{self.valid_fraction} + {self.test_fraction} = {self.valid_fraction + self.test_fraction})"
            )
        if self.min_chars > self.max_chars:
            raise ValueError(
                f"min_chars must be <= max_chars (got min_chars={self.min_chars}, max_chars={self.max_chars})"
            )
        if (self.src_column is None) != (self.tgt_column is None):
            raise ValueError(
                "src_column and tgt_column are set together or not at all "
                f"(got src_column={self.src_column!r}, tgt_column={self.tgt_column!r})"
            )
        if self.source == "hf" and not self.hf_name:
            raise ValueError(f"source='hf' needs hf_name (got hf_name={self.hf_name!r})")
        if self.source == "local" and not self.local_path:
            raise ValueError(f"source='local' needs local_path (got local_path={self.local_path!r})")
        if (self.source == "clearml") != (self.clearml_dataset is not None):
            raise ValueError("source='clearml' and clearml_dataset go together (got "
                             f"source={self.source!r}, clearml_dataset={self.clearml_dataset!r})")
        if self.clearml_dataset is not None:
            parse_dataset_ref(self.clearml_dataset)
        if (self.valid_count is None) != (self.test_count is None):
            raise ValueError("valid_count and test_count are set together or not at all "
                             f"(got valid_count={self.valid_count}, test_count={self.test_count})")
        if self.source == "imdb" and self.ding_extra_train_phrases:
            raise ValueError("ding_extra_train_phrases adds Ding dictionary pairs; it needs source='ding' "
                             "(got 'imdb')")
        if self.source == "listops":
            self._listops_fits()
        if self.source == "ding" and {self.src_lang, self.tgt_lang} != {"de", "en"}:
            raise ValueError(
                f"the Ding dictionary is German-English (expected src_lang/tgt_lang 'de'/'en' "
                f"in either order, got {self.src_lang!r}/{self.tgt_lang!r})"
            )
        if self.src_lang == self.tgt_lang:
            raise ValueError(f"src_lang and tgt_lang must differ (got both {self.src_lang!r})")
        return self

    def _listops_fits(self) -> None:
        # the rules of src/data/listops.py (check_listops_settings, max_listops_chars), restated here so
        # that config does not import data; tests/data/test_listops.py holds the two together
        if self.listops_max_args < 2:
            raise ValueError("an operator takes 2 to listops_max_args arguments (expected listops_max_args "
                             f">= 2, got {self.listops_max_args})")
        if self.listops_min_length > self.listops_max_length:
            raise ValueError(f"expected listops_min_length <= listops_max_length, got listops_min_length="
                             f"{self.listops_min_length}, listops_max_length={self.listops_max_length}")
        longest = 1  # a node at the maximum depth is a digit; each level above: operator + args + "]"
        for _ in range(self.listops_max_depth - 1):
            longest = 2 + self.listops_max_args * longest
        if self.listops_min_length > longest:
            raise ValueError(f"trees of depth <= {self.listops_max_depth} with <= {self.listops_max_args} "
                             f"arguments are at most {longest} tokens long (expected listops_min_length <= "
                             f"{longest}, got {self.listops_min_length})")
        if self.max_rows is not None:
            raise ValueError("source='listops' generates data.listops_rows expressions; max_rows is for "
                             f"sources that are read (got max_rows={self.max_rows}, "
                             f"listops_rows={self.listops_rows})")
        n = self.listops_max_length  # tokens of <= 4 characters ("[MAX") and a space; n - 1 "( " + " )" pairs
        chars = 5 * n - 1 + (4 * (n - 1) if self.listops_parentheses else 0)
        if self.max_chars < chars:
            raise ValueError(f"max_chars={self.max_chars} would drop ListOps expressions as too_long: "
                             f"listops_max_length={n} tokens can take up to {chars} characters "
                             f"(expected max_chars >= {chars})")


def parse_dataset_ref(ref: str) -> dict[str, str | None]:
    """``data.clearml_dataset`` as ``Dataset.get`` takes it: ``{"dataset_id"}``, or ``{"dataset_project",
    "dataset_name", "dataset_version"}`` (version None: the latest finalized one)."""
    ref = ref.strip()
    if re.fullmatch(r"[0-9a-f]{32}", ref):  # the id ClearML shows on the dataset's page
        return {"dataset_id": ref}
    path, at, version = ref.partition("@")
    project, _, name = path.rpartition("/")  # a project may have subprojects: a/b/name
    if not project or not name or (at and not version):
        raise ValueError(f"clearml_dataset must be a dataset id (32 hex digits) or 'project/name' or "
                         f"'project/name@version' (got {ref!r})")
    return {"dataset_project": project, "dataset_name": name, "dataset_version": version or None}


class TokenizerConfig(FrozenConfig):
    """Byte-level BPE (or characters, bytes, words) trained on the training split only."""

    # bpe: byte-level BPE of vocab_size; char: one token per character seen in training (vocab_size
    # unused; language modelling, classification); byte: one token per UTF-8 byte, a fixed 260-token
    # vocabulary, nothing to train (classification, as LRA's byte-level IMDB); word: whitespace-separated
    # words seen in training, at most vocab_size with the special tokens (classification, e.g. ListOps)
    kind: Literal["bpe", "char", "byte", "word"] = "bpe"
    vocab_size: PositiveInt = 8000
    joint: bool = True  # one vocabulary for both languages (needed for shared embeddings)
    min_frequency: PositiveInt = 2
    # includes the added BOS/EOS: src = tokens + [EOS], tgt = [BOS] + tokens + [EOS]
    max_tokens_per_sentence: PositiveInt = 128

    @model_validator(mode="after")
    def _sizes(self) -> "TokenizerConfig":
        if self.kind == "bpe" and self.vocab_size <= MIN_VOCAB_SIZE:
            raise ValueError(
                f"vocab_size must exceed the {MIN_VOCAB_SIZE} byte and special symbols "
                f"(expected > {MIN_VOCAB_SIZE}, got {self.vocab_size})"
            )
        if self.kind == "word" and self.vocab_size <= 4:
            raise ValueError(f"vocab_size counts the 4 special tokens; a word vocabulary needs more "
                             f"(expected > 4, got {self.vocab_size})")
        if self.max_tokens_per_sentence < 3:
            raise ValueError(
                f"max_tokens_per_sentence must leave room for BOS, one token and EOS "
                f"(expected >= 3, got {self.max_tokens_per_sentence})"
            )
        return self


class BatchingConfig(FrozenConfig):
    """Token-budget batching, like fairseq's ``max_tokens``.

    A batch of B pairs costs B * max(longest source, longest target) padded tokens, and that cost
    stays within ``max_tokens`` (src/data/batching.py).
    """

    max_tokens: PositiveInt = 4096
    # fixed-size items (images, language-model windows): items per batch; these tasks need it
    batch_size: PositiveInt | None = None
    # language modelling: tokens per training window (None: model.max_positions)
    block_size: PositiveInt | None = None
    bucket_size_multiplier: PositiveInt = 100
    shuffle: bool = True
    # each of the corpus's own training pairs appears this many times per epoch, the extra pairs
    # (data.ding_extra_train_phrases) once: keeps the sentences, which the test split is made of,
    # from drowning among ~360k dictionary phrases (fairseq's --upsample-primary)
    upsample_primary: PositiveInt = 1
