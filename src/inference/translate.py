"""Translate text and score files with a model rebuilt by ``load_for_inference``.

Text goes through the same normalisation as the training data (``normalize_text``) and the same
encoding (source ids + EOS, cut to ``tokenizer.max_tokens_per_sentence``), so a sentence typed at
the command line reaches the model exactly as a test sentence does.
"""

from pathlib import Path
from typing import Any

from src.data.cleaning import normalize_text
from src.data.tokenizer import decode_ids, with_specials
from src.inference.loader import InferenceModel


def encode_sources(trained: InferenceModel, texts: list[str]) -> list[list[int]]:
    """Source token ids (tokens + EOS), as the tokenize step encodes a source sentence."""
    tokenizer = trained.tokenizers["src"]
    ids = [e.ids for e in tokenizer.encode_batch_fast([normalize_text(t) for t in texts])]  # as encode_corpus
    return with_specials(ids, trained.config.tokenizer.max_tokens_per_sentence, bos=False)[0]


def decoder_for(trained: InferenceModel, beam: int, length_penalty: float | None = None):
    """``decode(model, src, max_new_tokens)``: greedy for ``beam == 1``, else beam search."""
    from src.models.decoding import beam_search, greedy_decode

    bos, eos = trained.special_ids["bos"], trained.special_ids["eos"]
    if beam < 1:
        raise ValueError(f"--beam must be >= 1, got {beam}")
    if beam == 1:
        return lambda m, s, n: greedy_decode(m, s, bos_id=bos, eos_id=eos, max_new_tokens=n)
    alpha = trained.config.evaluation.length_penalty if length_penalty is None else length_penalty
    return lambda m, s, n: beam_search(m, s, bos_id=bos, eos_id=eos, beam_size=beam, length_penalty=alpha,
                                       max_new_tokens=n)


def translate_texts(trained: InferenceModel, texts: list[str], *, beam: int = 1, max_len: int | None = None,
                    batch_size: int = 32) -> list[str]:
    """One translation per input text, in order; an empty (or blank) text translates to ''.

    ``max_len`` caps the generated tokens (default: the config's ``evaluation.max_new_tokens``,
    within the model's positions); each sentence gets at most 1.5 x its length + 10.
    """
    from src.evaluation.evaluate import translate

    positions = trained.config.model.max_positions
    limit = max_len if max_len is not None else trained.config.evaluation.max_new_tokens
    if not 1 <= limit <= positions:
        raise ValueError(
            f"--max-len must be between 1 and the model's max_positions={positions}, got {limit}")
    keep = [i for i, text in enumerate(texts) if text.strip()]
    sources = encode_sources(trained, [texts[i] for i in keep])
    ids = translate(trained.model, sources, decoder_for(trained, beam), batch_size, trained.device,
                    "translate", limit) if sources else []
    out = [""] * len(texts)
    for i, row in zip(keep, ids):
        out[i] = decode_ids(trained.tokenizers["tgt"], row)
    return out


def read_pairs_file(path: Path, trained: InferenceModel) -> tuple[list[str], list[str]]:
    """Source and reference sentences of a .tsv/.csv/.jsonl/.parquet file.

    Columns: the run's ``data.src_column``/``tgt_column`` if it had them, else columns named by the
    languages (``de``, ``en``), else a ``translation`` column of ``{"de": ..., "en": ...}`` records.
    """
    from src.config import DataConfig
    from src.data.sources import read_local

    data = trained.config.data
    columns = (data.src_column, data.tgt_column) if data.src_column else (data.src_lang, data.tgt_lang)
    header = _header(path)
    if header is not None and not set(columns) <= set(header):
        columns = (None, None)  # fall back to the translation column
    cfg = DataConfig(source="local", local_path=str(path), src_lang=data.src_lang, tgt_lang=data.tgt_lang,
                     src_column=columns[0], tgt_column=columns[1])
    pairs = read_local(cfg)
    kept = [(normalize_text(s), normalize_text(t)) for s, t in zip(pairs.src, pairs.tgt)
            if isinstance(s, str) and isinstance(t, str) and s.strip() and t.strip()]
    if not kept:
        raise ValueError(f"{path} holds no sentence pairs in columns {columns} (or a 'translation' column)")
    return [s for s, _ in kept], [t for _, t in kept]


def _header(path: Path) -> list[str] | None:
    if path.suffix.lower() not in (".tsv", ".csv"):
        return None
    with path.open(encoding="utf-8", errors="replace") as f:
        first = f.readline().rstrip("\r\n")
    return first.split("\t" if path.suffix.lower() == ".tsv" else ",")


def encoded_split(trained: InferenceModel, sources: list[str], references: list[str]) -> Any:
    """A ``datasets.Dataset`` with the columns ``evaluate`` reads (src, tgt, src_ids, tgt_ids)."""
    from datasets import Dataset

    tgt_tokenizer = trained.tokenizers["tgt"]
    max_len = trained.config.tokenizer.max_tokens_per_sentence
    tgt_ids = [e.ids for e in tgt_tokenizer.encode_batch_fast(references)]
    return Dataset.from_dict({
        "src": sources, "tgt": references, "src_ids": encode_sources(trained, sources),
        "tgt_ids": with_specials(tgt_ids, max_len, bos=True)[0],
    })


def evaluate_split(trained: InferenceModel, split: Any, max_sentences: int | None) -> dict[str, Any]:
    """Teacher-forced loss, BLEU and chrF (greedy and beam) of ``split``, as the evaluate step scores."""
    from src.tasks.translation.scoring import score_test_split

    evaluation = trained.config.evaluation.model_copy(update={"max_test_sentences": max_sentences})
    cfg = trained.config.model_copy(update={"evaluation": evaluation})
    return score_test_split(trained.model, split, trained.tokenizers["tgt"], cfg, trained.device)
