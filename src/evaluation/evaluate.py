"""Decoding a test split in batches, and scoring translations with sacrebleu (BLEU, chrF); saving
metrics and samples."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sacrebleu
import torch
from tqdm import tqdm

from src.data.special_tokens import BOS_ID, EOS_ID, PAD_ID
from src.models.decoding import greedy_decode
from src.models.transformer import EncoderDecoderTransformer



def length_budget(src_len: int, max_new_tokens: int) -> int:
    """Tokens to generate for a source of ``src_len``: 1.5x + 10 (fairseq's max_len_a/b), capped.

    A translation is rarely much longer than its source; without this an undertrained model that
    never emits EOS decodes every batch to ``max_new_tokens``.
    """
    return min(max_new_tokens, int(1.5 * src_len) + 10)


def decode_greedy(model: EncoderDecoderTransformer, src: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding with the tokenizer's BOS/EOS, in the ``decode(model, src, n)`` shape ``translate``
    calls."""
    return greedy_decode(model, src, bos_id=BOS_ID, eos_id=EOS_ID, max_new_tokens=max_new_tokens)


@torch.no_grad()
def translate(model: EncoderDecoderTransformer, sources: list[list[int]], decode: Callable[..., torch.Tensor],
              batch_size: int, device: torch.device, desc: str, max_new_tokens: int) -> list[list[int]]:
    """Decode every source; batches are formed from length-sorted sources to limit padding."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    outputs: list[list[int]] = [[] for _ in sources]
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        chunk = order[start:start + batch_size]
        src = pad_sources([sources[i] for i in chunk])
        generated = decode(model, src.to(device), length_budget(src.size(1), max_new_tokens)).tolist()
        for row, i in enumerate(chunk):
            outputs[i] = generated[row]
    return outputs


def pad_sources(sources: list[list[int]]) -> torch.Tensor:
    """Token id lists as one (B, S) batch, padded with PAD_ID to the longest."""
    src = torch.full((len(sources), max(map(len, sources))), PAD_ID, dtype=torch.long)
    for row, ids in enumerate(sources):
        src[row, : len(ids)] = torch.tensor(ids)
    return src


def score(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu defaults: 13a tokenisation, detokenised input)."""
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
    }


def save_samples(samples: list[dict[str, str]], path: Path) -> Path:
    """The sample table as TSV (source, reference, greedy, beam); tabs and newlines inside become spaces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["source", "reference", "greedy", "beam"]
    rows = ["\t".join(columns)] + ["\t".join(" ".join(str(s[c]).split()) for c in columns) for s in samples]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def save_metrics(metrics: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
