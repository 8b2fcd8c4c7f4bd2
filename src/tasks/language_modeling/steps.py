"""What each pipeline step does for language modelling (Austen + Brown prose by default).

The same five steps as the other tasks: documents are read and split by hash with a data card
(``src/data/prose.py``); a character or byte-level BPE tokenizer is trained on the training text
and every split becomes one token stream; the one training loop trains the ``decoder_lm``; the
test stream is scored (loss, perplexity, bits per character) and sampled; test bpc gates the
registry, lower being better.
"""

import json
import shutil
from typing import TYPE_CHECKING, Any

from src.tasks.common import record_tokenized, train_and_register
from src.tasks.spec import StepContext

if TYPE_CHECKING:
    from src.inference import InferenceModel

SPLIT_NAMES = ("train", "validation", "test")


def data_prep(step: StepContext) -> dict[str, Any]:
    from src.data.prepare import check_split_sizes
    from src.data.prose import prepare_prose, read_prose

    data, out_dir, tracker = step.cfg.data, step.step_dir, step.tracker
    card = prepare_prose(read_prose(data), out_dir / "text", data)
    check_split_sizes(card["counts"], data)  # before anything trains on it
    tracker.upload_artifact("data_card", card)
    tracker.upload_artifact("dataset", out_dir / "text")
    for figure in ("documents", "words", "characters"):
        tracker.log_scalars(f"{figure} per split", {name: s[figure] for name, s in card["splits"].items()}, 0)
    for corpus, splits in card["per_corpus"].items():
        tracker.log_scalars(f"words per split/{corpus}", {name: s["words"] for name, s in splits.items()}, 0)
    tracker.log_text((out_dir / "text" / "data_card.md").read_text(encoding="utf-8"), console=False)
    return {"data_dir": str(out_dir), "task_id": tracker.task_id, "counts": card["counts"], "corpus": "text"}


def block_size(cfg) -> int:
    return cfg.batching.block_size or cfg.model.max_positions


def tokenize(step: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """The configured tokenizer on the training text only; each split encoded as ``<s>`` + its text."""
    import numpy as np
    from datasets import Dataset

    from src.data.char_tokenizer import train_char
    from src.data.tokenizer import load_tokenizer, train_one
    from src.tasks.language_modeling.task import SEPARATOR, encode_stream
    from src.tracking import resolve_input
    from src.training.init_from import source_tokenizer

    cfg, out_dir, tracker = step.cfg, step.step_dir, step.tracker
    text_dir = resolve_input(data, "data_dir", artifact="dataset", subdir="text") / "text"
    texts = {name: (text_dir / f"{name}.txt").read_text(encoding="utf-8") for name in SPLIT_NAMES}
    path = out_dir / "tokenizer.json"
    # the tokenizer of model.init_from's weights: its <pad>, <s>, </s>, <unk> must be ours (0-3)
    pretrained = (source_tokenizer(cfg.model.init_from, specials=("pad", "bos", "eos", "unk"))
                  if cfg.model.init_from else None)
    if pretrained is not None:
        pretrained.save(str(path))
    elif cfg.tokenizer.kind == "char":
        train_char([texts["train"]], path)
    else:
        train_one(Dataset.from_dict({"text": texts["train"].split(SEPARATOR)}), ["text"], cfg.tokenizer, path)
    tokenizer = load_tokenizer(path)
    report = {}
    for name, text in texts.items():
        ids, characters = encode_stream(tokenizer, text)
        np.save(out_dir / f"{name}_ids.npy", np.asarray(ids, dtype=np.int32))
        # prompts, and the reader's reference
        shutil.copyfile(text_dir / f"{name}.txt", out_dir / f"{name}.txt")
        report[name] = {"tokens": len(ids), "characters": characters,
                        "characters_per_token": characters / max(len(ids), 1)}
    (out_dir / "stream.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    record_tokenized(tracker, out_dir, path, report)
    return {"tokenized_dir": str(out_dir), "task_id": tracker.task_id, "tokenizers": {"text": str(path)},
            "vocab_size": tokenizer.get_vocab_size()}


def probe_for(cfg, tokenizer, text: str):
    from src.tasks.language_modeling.task import LanguageModelProbe

    n = cfg.tracking.probe_sentences
    return LanguageModelProbe.from_text(text, tokenizer, cfg.tokenizer.kind == "char", n,
                                        max_new_tokens=cfg.evaluation.max_new_tokens) if n else None


def train(step: StepContext, tokenized: dict[str, Any], resume: bool) -> dict[str, Any]:
    from src.data.tokenizer import load_tokenizer
    from src.training.checkpoint_format import inference_fields
    from src.tasks.language_modeling.task import LanguageModelingTask, read_stream
    from src.tracking import resolve_input

    cfg = step.cfg
    tok_dir = resolve_input(tokenized, "tokenized_dir", artifact="tokenized")
    tokenizer = load_tokenizer(tok_dir / "tokenizer.json")
    size = block_size(cfg)
    task = LanguageModelingTask(read_stream(tok_dir, "train", size), read_stream(tok_dir, "validation", size),
                                tokenizer.get_vocab_size(), cfg.batching.batch_size,
                                cfg.evaluation.valid_max_tokens,
                                probe_for(cfg, tokenizer,
                                          (tok_dir / "validation.txt").read_text(encoding="utf-8")))
    return train_and_register(step, task, inference_fields({"text": tokenizer}, "decoder_lm"), resume)


def evaluate(step: StepContext, tokenized: dict[str, Any], model: "InferenceModel") -> dict[str, Any]:
    from src.evaluation.evaluate import save_metrics
    from src.tasks.language_modeling.task import read_stream, score_stream
    from src.tracking import resolve_input

    cfg, tracker = step.cfg, step.tracker
    tok_dir = resolve_input(tokenized, "tokenized_dir", artifact="tokenized")
    test = read_stream(tok_dir, "test", block_size(cfg))
    # no gradients: bigger batches
    scores = score_stream(model.model, test, cfg.evaluation.batch_size, model.device)
    metrics = {**scores, "n_tokens": int(test.ids.numel()), "n_characters": test.characters,
               "step": model.step}
    path = save_metrics(metrics, step.step_dir / "metrics.json")
    tracker.upload_artifact("metrics", path)
    tracker.log_scalars("test", scores, 0)
    probe = probe_for(cfg, model.tokenizers["text"], (tok_dir / "test.txt").read_text(encoding="utf-8"))
    if probe is not None:
        probe.report(model.model, tracker, 0)
    return {"metrics": metrics, "metrics_path": str(path), "task_id": tracker.task_id}


def gate(cfg, metrics: dict[str, Any]) -> dict[str, Any]:
    """The register step's gate: test bits per character at most ``evaluation.bpc_threshold``."""
    return {"metric": "bpc", "name": "bpc", "value": float(metrics["bpc"]),
            "threshold": cfg.evaluation.bpc_threshold,
            "higher_is_better": False,
            "metadata": {"bpc": float(metrics["bpc"]), "perplexity": float(metrics["perplexity"]),
                         "test_loss": float(metrics["loss"])}}


def summary(cfg, outputs: dict[str, Any]) -> list[str]:
    """The test figures ``train`` prints at the end (the register step's decision follows them)."""
    metrics = outputs["evaluate"]["metrics"]
    return [f"test bpc:        {metrics['bpc']:.4f} ({metrics['n_characters']:,} characters)",
            f"test perplexity: {metrics['perplexity']:.2f} (loss {metrics['loss']:.4f} per token)"]
