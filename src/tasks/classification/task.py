"""Text classification as a task of the one training loop (``src/training/trainer.py``).

A text is its token ids with the tokenizer's ``<s>`` (``BOS_ID``) in front, which serves as
BERT's ``[CLS]``; the label is an int (``src/data/text_classification.py`` maps class names to
ints). The loss is cross-entropy over texts; validation reports loss, accuracy and macro-F1; the
register step gates on accuracy; the probe draws what the pooled query attends to.
"""

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.batching import TokenBudgetBatchSampler
from src.data.special_tokens import CLS_ID, PAD_ID
from src.training.probe import readable_labels, shorten
from src.training.task import evaluating

Batch = tuple[Tensor, Tensor]  # (tokens (B, T), labels (B,))


def encode_texts(tokenizer, texts: list[str], max_tokens: int) -> tuple[list[list[int]], int]:
    """``[CLS] + tokens`` cut to ``max_tokens`` ids, for a batch of texts; also how many were cut.

    Any of the project's tokenizers (BPE, bytes, characters, words): none adds special tokens itself.
    A pretrained tokenizer (``model.init_from``) has its own template, BERT's ``[CLS] text [SEP]``: the
    text is cut to leave room for it, then the template is applied, as the model was pretrained.
    """
    if tokenizer.post_processor is not None:
        room = max_tokens - tokenizer.post_processor.num_special_tokens_to_add(False)
        encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        cut = sum(len(e.ids) > room for e in encodings)
        for encoding in encodings:
            encoding.truncate(room)
        return [tokenizer.post_process(e).ids for e in encodings], cut
    ids = [e.ids for e in tokenizer.encode_batch_fast(texts)]
    return [[CLS_ID, *t[: max_tokens - 1]] for t in ids], sum(len(t) > max_tokens - 1 for t in ids)


@dataclass
class LabelledCorpus:
    """Token ids and labels of one split, in memory for fast batching."""

    ids: list[list[int]]
    labels: list[int]

    @classmethod
    def from_dataset(cls, split) -> "LabelledCorpus":
        return cls(ids=split["ids"], labels=[int(label) for label in split["label"]])

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> tuple[list[int], list[int]]:
        lengths = [len(ids) for ids in self.ids]
        return lengths, lengths  # the sampler sizes batches by the longer side; a text has one

    def batch(self, indices: list[int], device: torch.device) -> Batch:
        """Right-padded token ids (B, T) and labels (B,)."""
        width = max(len(self.ids[i]) for i in indices)
        tokens = torch.full((len(indices), width), PAD_ID, dtype=torch.long)
        for row, i in enumerate(indices):
            tokens[row, : len(self.ids[i])] = torch.tensor(self.ids[i])
        return tokens.to(device), torch.tensor([self.labels[i] for i in indices], device=device)


def classification_metrics(predictions: list[int], labels: list[int], n_classes: int) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision and recall, and the confusion matrix (rows: true class)."""
    confusion = [[0] * n_classes for _ in range(n_classes)]
    for predicted, true in zip(predictions, labels, strict=True):
        confusion[true][predicted] += 1
    precision, recall, f1 = [], [], []
    for k in range(n_classes):
        hits, predicted_k, true_k = confusion[k][k], sum(row[k] for row in confusion), sum(confusion[k])
        p, r = hits / predicted_k if predicted_k else 0.0, hits / true_k if true_k else 0.0
        precision.append(p)
        recall.append(r)
        if predicted_k or true_k:  # a class neither present nor predicted says nothing (as scikit-learn)
            f1.append(2 * p * r / (p + r) if p + r else 0.0)
    total = max(len(labels), 1)
    return {"accuracy": sum(confusion[k][k] for k in range(n_classes)) / total,
            "macro_f1": sum(f1) / max(len(f1), 1),
            "precision": precision, "recall": recall, "confusion": confusion, "n": len(labels)}


@torch.no_grad()
def predict(model: nn.Module, corpus: LabelledCorpus, max_tokens: int,
            device: torch.device) -> tuple[Tensor, float]:
    """Class probabilities (N, K) in corpus order, and the mean cross-entropy."""
    with evaluating(model):
        sampler = TokenBudgetBatchSampler(*corpus.lengths(), max_tokens, shuffle=False)
        probabilities: list[Tensor | None] = [None] * len(corpus)
        loss_sum = 0.0
        for indices in sampler:
            tokens, labels = corpus.batch(indices, device)
            logits = model(tokens).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            for i, row in zip(indices, logits.softmax(-1).cpu()):
                probabilities[i] = row
    return torch.stack(probabilities), loss_sum / max(len(corpus), 1)


@dataclass
class ClassificationProbe:
    """A few validation texts whose pooled-query attention is drawn during training.

    The query is the ``[CLS]`` token (for mean pooling its row shows the same: what the first
    position reads); keys are the text's first ``max_tokens`` subwords.
    """

    ids: list[list[int]]
    tokens: list[list[str]]
    texts: list[str]

    @classmethod
    def from_ids(cls, ids: list[list[int]], tokenizer, max_tokens: int = 48) -> "ClassificationProbe":
        kept = [list(row[:max_tokens]) for row in ids]
        return cls(kept, [readable_labels(tokenizer, row) for row in kept],
                   [tokenizer.decode(list(row), skip_special_tokens=True) for row in ids])

    @torch.no_grad()
    def report(self, model: nn.Module, tracker, step: int) -> None:
        from src.visualization import plot_attention

        with evaluating(model):
            device = next(model.parameters()).device
            for index, ids in enumerate(self.ids):
                _, layers = model(torch.tensor([ids], device=device), return_attention=True)
                if not layers:  # a recurrent model has no attention to draw
                    break
                weights = torch.stack([layer[0, :, :1].float().cpu() for layer in layers])  # (L, H, 1, T)
                title = f'[CLS] attention · step {step} · "{shorten(self.texts[index])}"'
                figure = plot_attention(weights, self.tokens[index][:1], self.tokens[index], title,
                                        label_every_head=False)
                tracker.log_figure("attention/cls", f"text {index}", figure, step)


@dataclass
class ClassificationTask:
    """The training and validation texts of a run, the class count and the probe."""

    train: LabelledCorpus
    valid: LabelledCorpus
    vocab_size: int
    n_classes: int
    probe: ClassificationProbe | None = None

    def model_sizes(self) -> dict[str, int]:
        return {"vocab_size": self.vocab_size, "n_classes": self.n_classes, "pad_id": PAD_ID}

    def lengths(self) -> tuple[list[int], list[int]]:
        return self.train.lengths()

    def batch(self, indices: list[int], device: torch.device) -> Batch:
        return self.train.batch(indices, device)

    def targets(self, batch: Batch) -> int:
        """Loss terms in a batch: one per text."""
        return int(batch[1].numel())

    def tokens(self, batch: Batch) -> int:
        return int((batch[0] != PAD_ID).sum())

    def logits_and_labels(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """Class logits (B, K) in float32 and labels (B,): what the loss and a distillation teacher read."""
        tokens, labels = batch
        return model(tokens).float(), labels

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, int]:
        """Mean (label-smoothed) cross-entropy over the batch's texts, and their count."""
        logits, labels = self.logits_and_labels(model, batch)
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing), int(labels.numel())

    def validate(self, model: nn.Module, max_tokens: int, device: torch.device) -> dict[str, float]:
        """Validation loss (it picks the best checkpoint), accuracy and macro-F1."""
        probabilities, loss = predict(model, self.valid, max_tokens, device)
        metrics = classification_metrics(probabilities.argmax(-1).tolist(), self.valid.labels, self.n_classes)
        return {"loss": loss, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
