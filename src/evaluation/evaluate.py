"""Test-set evaluation: loss, perplexity, token accuracy, and sacrebleu BLEU/chrF of decoded text."""

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sacrebleu
import torch
from loguru import logger
from tqdm import tqdm

from src.data.special_tokens import BOS_ID, EOS_ID, PAD_ID
from src.data.tokenizer import decode_ids
from src.models.decoding import beam_search, greedy_decode
from src.models.transformer import EncoderDecoderTransformer
from src.tasks.translation import ParallelCorpus, teacher_forced_metrics

if TYPE_CHECKING:  # a type only: the experiment config's module reads the task table, which reaches this one
    from src.config import EvaluationConfig, ExperimentConfig


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


def evaluate(model: EncoderDecoderTransformer, test_split, tgt_tokenizer, cfg: "ExperimentConfig",
             device: torch.device) -> dict[str, Any]:
    """All test metrics, and the decoded text for the sample table.

    ``test_split`` is the encoded test split with columns src, tgt, src_ids, tgt_ids.
    """
    ecfg: "EvaluationConfig" = cfg.evaluation
    if ecfg.max_test_sentences is not None and len(test_split) > ecfg.max_test_sentences:
        test_split = test_split.select(range(ecfg.max_test_sentences))
    corpus = ParallelCorpus.from_dataset(test_split)
    references = list(test_split["tgt"])
    metrics: dict[str, Any] = {"test": teacher_forced_metrics(model, corpus, cfg.batching.max_tokens, device)}
    decoders = {
        "greedy": decode_greedy,
        "beam": lambda m, s, n: beam_search(m, s, bos_id=BOS_ID, eos_id=EOS_ID, beam_size=ecfg.beam_size,
                                            length_penalty=ecfg.length_penalty, max_new_tokens=n),
    }
    outputs: dict[str, list[str]] = {}
    for name, decode in decoders.items():
        start = time.perf_counter()
        ids = translate(model, corpus.src, decode, ecfg.batch_size, device, f"decode {name}",
                        ecfg.max_new_tokens)
        outputs[name] = [decode_ids(tgt_tokenizer, row) for row in ids]
        metrics[name] = score(outputs[name], references) | {"seconds": time.perf_counter() - start}
        logger.info(f"{name}: BLEU {metrics[name]['bleu']:.2f}, chrF {metrics[name]['chrf']:.2f}")
    metrics["n_sentences"] = len(references)
    translations = [
        {"source": s, "reference": r, "greedy": g, "beam": b}
        for s, r, g, b in zip(test_split["src"], references, outputs["greedy"], outputs["beam"])
    ]
    return {"metrics": metrics, "samples": translations[: ecfg.n_samples], "translations": translations,
            "outputs": outputs}


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
