"""The evaluate step's scores for translation: teacher-forced loss and perplexity, then greedy and beam
translations of the test split scored with BLEU and chrF (``src/evaluation/evaluate.py``)."""

import time
from typing import TYPE_CHECKING, Any

import torch
from loguru import logger

from src.data.special_tokens import BOS_ID, EOS_ID
from src.data.tokenizer import decode_ids
from src.evaluation.evaluate import decode_greedy, score, translate
from src.models.decoding import beam_search
from src.models.transformer import EncoderDecoderTransformer
from src.tasks.translation.task import ParallelCorpus, teacher_forced_metrics

if TYPE_CHECKING:
    from src.config import EvaluationConfig
    from src.experiment import ExperimentConfig


def score_test_split(model: EncoderDecoderTransformer, test_split, tgt_tokenizer, cfg: "ExperimentConfig",
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
