"""Fine-tuning throughput: our encoder classifier against Hugging Face's ``BertForSequenceClassification``.

    python -m src.main bench finetune --init-from ~/.cache/stepwise-transformers/all-minilm-l6-v2 \\
        [--reviews 64] [--batch-size 16] [--max-tokens 4096] [--max-len 256] [--repeats 5] [--threads 2] \\
        [--json]

Both models start from the same weights: Hugging Face's model loads the folder (its classifier drawn fresh,
under ``--seed``) and ours takes every tensor of it, the classifier included (``src/models/hf_weights.py``).
Both train on the same real IMDB reviews: the first ``--reviews`` the data step keeps, encoded with the
folder's tokenizer as the tokenize step encodes them (``[CLS] text [SEP]``, cut to ``--max-len``), labelled
as it labels them. Both train as our fine-tuning does: train mode with the folder's dropout rates, the loss
``cross_entropy(logits, labels)``, backward, AdamW (``--lr``, weight decay 0.01, fused where PyTorch has it:
Hugging Face's Trainer default since torch 2.8).

The same reviews are cut into batches two ways, and each model trains on both:

- ``padded``: ``--batch-size`` reviews at a time in file order, each batch padded to its longest review, as a
  plain data loader feeds Hugging Face's loop;
- ``bucketed``: our length bucketing (``TokenBudgetBatchSampler``, ``--max-tokens`` padded tokens a batch),
  the batches the trainer makes.

So the table compares ours and Hugging Face's on the same batches (the same token ids, batch composition
and lengths), with and without bucketing, and ours with bucketing against Hugging Face without it, on the
same reviews. Before timing, every batch is checked to give both models the same logits and loss (dropout
off): they see identical inputs and compute the same function. Contestants alternate and each figure is the
median of ``--repeats`` passes over all the reviews (``src/bench.py``'s ``interleaved_medians``): reviews/s,
real tokens/s (padding not counted) and the ratios; the ratios are also given per second of the process's CPU
time, which other processes on a shared machine disturb less than the clock (with one thread).
"""

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from loguru import logger
from torch import Tensor, nn

from src.bench import interleaved_medians

TARGET = 1.3  # ours / Hugging Face's training throughput on the same batches (issue 29)
CONTESTANTS = (("ours", "padded"), ("hf", "padded"), ("ours", "bucketed"), ("hf", "bucketed"))

Batch = tuple[Tensor, Tensor]  # (tokens (B, T), labels (B,))


@dataclass
class Reviews:
    """The reviews' token ids and labels, and the two ways of batching them (lists of review indices)."""

    ids: list[list[int]]
    labels: list[int]
    batchings: dict[str, list[list[int]]]

    def batches(self, batching: str, device: torch.device) -> list[Batch]:
        """Right-padded token ids and labels, collated as the trainer collates them."""
        from src.tasks.classification.task import LabelledCorpus

        corpus = LabelledCorpus(self.ids, self.labels)
        return [corpus.batch(indices, device) for indices in self.batchings[batching]]


def check_folder(folder: str) -> None:
    """Refuse, in one line and before any work, a folder that is not a Hugging Face BERT."""
    from src.models.hf_config import InitSourceError, hf_model_keys, is_hf_folder, read_hf_config

    if not is_hf_folder(folder):
        raise InitSourceError(f"--init-from {folder}: no Hugging Face folder there (expected config.json and "
                              "model.safetensors or pytorch_model.bin)")
    hf_model_keys(read_hf_config(folder), "encoder_classifier", folder)  # a GPT-2 or ViT: refused


def read_reviews(args: argparse.Namespace) -> Reviews:
    """The first ``--reviews`` kept IMDB reviews as the data and tokenize steps make them, and their two
    batchings."""
    from src.data import text_classification as tc
    from src.data.batching import TokenBudgetBatchSampler
    from src.tasks.classification.task import encode_texts
    from src.training.init_from import source_tokenizer

    cleaned = tc.clean_labelled(tc.read_imdb(args.imdb_path, max_rows=2 * args.reviews + 100), args.max_chars)
    if len(cleaned) < args.reviews:
        raise ValueError(f"--reviews {args.reviews}: the IMDB file gave only {len(cleaned)} reviews")
    texts, names = cleaned.texts[: args.reviews], cleaned.labels[: args.reviews]
    mapping = tc.label_mapping(cleaned.labels)
    tokenizer = source_tokenizer(args.init_from)
    if tokenizer is None:
        raise ValueError(f"--init-from {args.init_from}: no tokenizer.json; the bench encodes the reviews "
                         "with the folder's tokenizer")
    ids, _ = encode_texts(tokenizer, texts, args.max_len)
    lengths = [len(i) for i in ids]
    order = list(range(len(ids)))
    padded = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    bucketed = TokenBudgetBatchSampler(lengths, lengths, args.max_tokens, seed=args.seed).batches(0)
    return Reviews(ids, [mapping[n] for n in names], {"padded": padded, "bucketed": bucketed})


def build_models(args: argparse.Namespace, n_classes: int) -> tuple[nn.Module, nn.Module]:
    """Hugging Face's model from the folder, and ours holding every one of its tensors."""
    import transformers

    from src.config.model import ModelConfig
    from src.data.special_tokens import PAD_ID
    from src.models.builders import build
    from src.models.hf_config import hf_model_keys, read_hf_config
    from src.models.hf_weights import bert_state_dict
    from src.training.init_from import load_matching

    config = read_hf_config(args.init_from)
    rates = {"hidden_dropout_prob": config.get("hidden_dropout_prob", 0.1) if args.dropout is None
             else args.dropout,
             "attention_probs_dropout_prob": config.get("attention_probs_dropout_prob", 0.1)
             if args.attention_dropout is None else args.attention_dropout}
    torch.manual_seed(args.seed)  # the fresh classifier (and a pooler, if the folder has none)
    with _quiet_transformers():
        hf = transformers.BertForSequenceClassification.from_pretrained(args.init_from, num_labels=n_classes,
                                                                        **rates)
    cfg = ModelConfig(family="encoder_classifier", pooling="cls",
                      **hf_model_keys(config, "encoder_classifier"), dropout=rates["hidden_dropout_prob"],
                      attention_dropout=rates["attention_probs_dropout_prob"])
    ours = build(cfg, vocab_size=config["vocab_size"], n_classes=n_classes, pad_id=PAD_ID)
    state, _ = bert_state_dict(hf.state_dict())
    report = load_matching(ours, state, args.init_from)
    if report.new:
        raise ValueError(f"our model has tensors Hugging Face's has not: {report.new}")
    return ours, hf


class _quiet_transformers:
    """transformers' load report (the new classifier) is expected here: keep it off the console."""

    def __enter__(self) -> None:
        import transformers

        self.level = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()

    def __exit__(self, *exc: object) -> None:
        import transformers

        transformers.logging.set_verbosity(self.level)
        transformers.logging.enable_progress_bar()


def logits(name: str, model: nn.Module, tokens: Tensor) -> Tensor:
    """The class logits (B, K): ours from the ids (padding is id 0), Hugging Face's with its attention mask
    (token types default to zeros in both)."""
    if name == "ours":
        return model(tokens)
    return model(input_ids=tokens, attention_mask=(tokens != 0).long()).logits


def first_step_differences(models: dict[str, nn.Module], batches: list[Batch]) -> dict[str, float]:
    """The largest |ours - Hugging Face's| over ``batches`` of the logits and of the loss, dropout off: what
    the first training step sees."""
    worst = {"logits": 0.0, "loss": 0.0}
    for model in models.values():
        model.eval()
    with torch.no_grad():
        for tokens, labels in batches:
            ours, hf = logits("ours", models["ours"], tokens), logits("hf", models["hf"], tokens)
            loss = F.cross_entropy(ours, labels) - F.cross_entropy(hf, labels)
            worst = {"logits": max(worst["logits"], (ours - hf).abs().max().item()),
                     "loss": max(worst["loss"], abs(loss.item()))}
    for model in models.values():
        model.train()
    return worst


def adamw(model: nn.Module, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """The same AdamW for both: fused (one kernel for all tensors), as Hugging Face's Trainer defaults to."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01,
                             fused=device.type in ("cpu", "cuda"))


def train_pass(name: str, model: nn.Module, optimizer: torch.optim.Optimizer, batches: list[Batch]) -> None:
    """One training step per batch: forward, cross-entropy, backward, AdamW."""
    for tokens, labels in batches:
        F.cross_entropy(logits(name, model, tokens), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def run(args: argparse.Namespace) -> dict:
    """Check the inputs, time the four contestants; the result as a plain dict."""
    check_folder(args.init_from)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    reviews = read_reviews(args)
    models = dict(zip(("ours", "hf"), (m.to(device) for m in build_models(args, len(set(reviews.labels))))))
    batches = {batching: reviews.batches(batching, device) for batching in ("padded", "bucketed")}
    checks = [first_step_differences(models, b) for b in batches.values()]
    parity = {key: max(check[key] for check in checks) for key in ("logits", "loss")}
    logger.info(f"same inputs, same function (dropout off): max |ours - hf| first-step loss "
                f"{parity['loss']:.1e}, logits {parity['logits']:.1e}")
    optimizers = {name: adamw(model, args.lr, device) for name, model in models.items()}
    cpu_seconds: dict[str, list[float]] = {f"{n} {b}": [] for n, b in CONTESTANTS}

    def timed_pass(name: str, batching: str) -> None:
        started = time.process_time()
        train_pass(name, models[name], optimizers[name], batches[batching])
        cpu_seconds[f"{name} {batching}"].append(time.process_time() - started)

    passes = {f"{n} {b}": (lambda n=n, b=b: timed_pass(n, b)) for n, b in CONTESTANTS}
    logger.info(f"training: {args.repeats} interleaved passes of {len(reviews.ids)} reviews per contestant")
    timed = interleaved_medians(passes, len(reviews.ids), args.repeats)
    for name, seconds in cpu_seconds.items():  # the warm-up pass is not timed
        timed[name]["cpu_median"] = len(reviews.ids) / statistics.median(seconds[1:])
    return _result(args, reviews, models["hf"], parity, timed)


def _result(args: argparse.Namespace, reviews: Reviews, hf: nn.Module, parity: dict, timed: dict) -> dict:
    real = sum(map(len, reviews.ids))
    padded_tokens = {b: sum(len(batch) * max(len(reviews.ids[i]) for i in batch) for batch in batching)
                     for b, batching in reviews.batchings.items()}
    throughput = {name: {"reviews_per_s": t["median"], "tokens_per_s": t["median"] * real / len(reviews.ids),
                         "best_reviews_per_s": t["best"], "repeats_reviews_per_s": t["repeats"],
                         "reviews_per_cpu_s": t["cpu_median"]}
                  for name, t in timed.items()}
    ratios = _ratios({name: t["median"] for name, t in timed.items()})
    cpu_ratios = _ratios({name: t["cpu_median"] for name, t in timed.items()})
    settings = {key: getattr(args, key) for key in ("init_from", "reviews", "batch_size", "max_tokens",
                                                    "max_len", "repeats", "lr", "device", "seed")}
    return {
        "settings": settings | {"threads": torch.get_num_threads(), "torch": torch.__version__,
                                "hf_attention": hf.config._attn_implementation,
                                "dropout": hf.config.hidden_dropout_prob,
                                "attention_dropout": hf.config.attention_probs_dropout_prob},
        "data": {"reviews": len(reviews.ids), "real_tokens": real,
                 "batches": {b: len(v) for b, v in reviews.batchings.items()},
                 "padding_efficiency": {b: real / n for b, n in padded_tokens.items()}},
        "max_abs_first_step_diff": parity,
        "throughput": throughput,
        "ratios": ratios,
        # per process CPU second: what other processes on a shared machine change least (with one thread)
        "cpu_time_ratios": cpu_ratios,
        "target": TARGET,
        "meets_target": {key: value >= TARGET for key, value in ratios.items()},
    }


def _ratios(m: dict[str, float]) -> dict[str, float]:
    """Ours over Hugging Face's on the same batches, and ours bucketed over Hugging Face's padded."""
    return {"padded": m["ours padded"] / m["hf padded"], "bucketed": m["ours bucketed"] / m["hf bucketed"],
            "ours_bucketed_vs_hf_padded": m["ours bucketed"] / m["hf padded"]}


def report(args: argparse.Namespace) -> str:
    """The bench as a table, or with ``--json`` one JSON object, for the console."""
    result = run(args)
    return json.dumps(result, indent=2) if args.json else _table(result)


def _table(result: dict) -> str:
    s, d, t, r = result["settings"], result["data"], result["throughput"], result["ratios"]
    parity = result["max_abs_first_step_diff"]
    lines = [
        f"Fine-tuning bench: ours vs Hugging Face BertForSequenceClassification ({s['hf_attention']} "
        f"attention), {Path(s['init_from']).name}",
        f"{d['reviews']} IMDB reviews ({d['real_tokens']} tokens, <= {s['max_len']} each), {s['threads']} "
        f"thread{'s' * (s['threads'] != 1)} on {s['device']}, torch {s['torch']}, dropout {s['dropout']}/"
        f"{s['attention_dropout']}, AdamW {s['lr']}",
        f"same inputs (dropout off): max |ours - hf| first-step loss {parity['loss']:.1e}, logits "
        f"{parity['logits']:.1e}; median of {s['repeats']} interleaved passes",
        "",
        f"{'batches':<44}{'ours rev/s':>11}{'hf rev/s':>10}{'ours tok/s':>11}{'hf tok/s':>10}{'ratio':>7}",
    ]
    titles = {"padded": f"padded: {s['batch_size']} reviews a batch (efficiency "
                        f"{d['padding_efficiency']['padded']:.2f})",
              "bucketed": f"bucketed: <= {s['max_tokens']} tokens (efficiency "
                          f"{d['padding_efficiency']['bucketed']:.2f})"}
    for batching, title in titles.items():
        ours, hf = t[f"ours {batching}"], t[f"hf {batching}"]
        lines.append(f"{title:<44}{ours['reviews_per_s']:>11.2f}{hf['reviews_per_s']:>10.2f}"
                     f"{ours['tokens_per_s']:>11.0f}{hf['tokens_per_s']:>10.0f}{r[batching]:>7.2f}")
    lines.append(f"{'ours bucketed vs hf padded (same reviews)':<86}{r['ours_bucketed_vs_hf_padded']:>7.2f}")
    cpu = result["cpu_time_ratios"]
    lines.append(f"by process CPU time (steadier on a busy machine): padded {cpu['padded']:.2f}, bucketed "
                 f"{cpu['bucketed']:.2f}, ours bucketed vs hf padded {cpu['ours_bucketed_vs_hf_padded']:.2f}")
    lines.append(f"target: ours / hf >= {result['target']} on the same batches")
    return "\n".join(lines)
