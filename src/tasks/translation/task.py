"""Translation as a task of the one training loop (``src/training/trainer.py``).

A task says what the loop cannot know: how to batch its data, what the loss is, what validation
measures, what the attention probe shows and which metric the register step gates on. The loop
itself only does ``loss.backward(); clip; step; schedule``.

Translation: pairs of token ids; teacher forcing (the decoder reads the target shifted by one);
label-smoothed cross-entropy over real target tokens (Sec. 5.4); validation loss and perplexity;
BLEU for the gate.
"""

from dataclasses import dataclass
from typing import Any

import torch
from loguru import logger
from torch import Tensor, nn

from src.data.batching import TokenBudgetBatchSampler, collate_translation
from src.data.special_tokens import PAD_ID
from src.training.loss import perplexity, token_accuracy, translation_loss
from src.training.probe import AttentionProbe
from src.training.task import evaluating

Batch = tuple[Tensor, Tensor, Tensor]  # (src, decoder input, labels)


@dataclass
class ParallelCorpus:
    """Token ids of one split, held in memory as Python lists for fast batching."""

    src: list[list[int]]
    tgt: list[list[int]]

    @classmethod
    def from_dataset(cls, split, upsample_primary: int = 1) -> "ParallelCorpus":
        """The split's pairs; with ``upsample_primary`` k > 1 every row not marked ``extra`` is
        repeated k times (the sampler then shuffles the copies apart)."""
        src, tgt = split["src_ids"], split["tgt_ids"]
        if upsample_primary == 1:
            return cls(src=src, tgt=tgt)
        if "extra" not in split.column_names:
            logger.warning(f"upsample_primary={upsample_primary} ignored: the split has no 'extra' column "
                           "(prepared by an older version?); every row is seen once per epoch")
            return cls(src=src, tgt=tgt)
        src, tgt = list(src), list(tgt)
        primary = [i for i, extra in enumerate(split["extra"]) if not extra]
        copies = upsample_primary - 1
        corpus = cls(src=src + [src[i] for i in primary] * copies,
                     tgt=tgt + [tgt[i] for i in primary] * copies)
        logger.info(f"training rows per epoch: {len(primary)} primary x {upsample_primary} + "
                    f"{len(split) - len(primary)} extra = {len(corpus)}")
        return corpus

    def __len__(self) -> int:
        return len(self.src)

    def lengths(self) -> tuple[list[int], list[int]]:
        """Source and target lengths, what the token-budget sampler sizes batches by."""
        return [len(s) for s in self.src], [len(t) for t in self.tgt]

    def batch(self, indices: list[int], device: torch.device) -> Batch:
        """(src, decoder input, labels): the target is shifted by one for teacher forcing."""
        batch = collate_translation([{"src_ids": self.src[i], "tgt_ids": self.tgt[i]} for i in indices],
                                    pad_id=PAD_ID)
        src, tgt = batch["src"].to(device), batch["tgt"].to(device)
        return src, tgt[:, :-1], tgt[:, 1:]


@torch.no_grad()
def teacher_forced_metrics(model: nn.Module, corpus: ParallelCorpus, max_tokens: int,
                           device: torch.device) -> dict[str, float]:
    """Per-token loss (no smoothing), perplexity and argmax accuracy with the reference as decoder input."""
    with evaluating(model):
        sampler = TokenBudgetBatchSampler(*corpus.lengths(), max_tokens, shuffle=False)
        loss_sum, correct, count = 0.0, 0, 0
        for indices in sampler:
            src, tgt_in, labels = corpus.batch(indices, device)
            logits = model(src, tgt_in)
            loss, _ = translation_loss(logits, labels, PAD_ID)
            hits, n = token_accuracy(logits, labels, PAD_ID)  # n: the same count, read on the host
            loss_sum, correct, count = loss_sum + loss.item() * n, correct + hits, count + n
    loss = loss_sum / max(count, 1)
    return {"loss": loss, "perplexity": perplexity(loss), "token_accuracy": correct / max(count, 1)}


@dataclass
class TranslationTask:
    """The training and validation pairs of a run, and the probe sentences whose attention is drawn."""

    train: ParallelCorpus
    valid: ParallelCorpus
    vocab_sizes: tuple[int, int]  # (source, target)
    probe: AttentionProbe | None = None

    @classmethod
    def from_encoded(cls, encoded, tokenizers: dict[str, Any], upsample_primary: int = 1,
                     probe_sentences: int = 1) -> "TranslationTask":
        """From the tokenize step's encoded splits and the ``src``/``tgt`` tokenizers."""
        valid = encoded["validation"]
        probe = AttentionProbe.from_ids(valid["src_ids"][:probe_sentences],
                                        valid["tgt_ids"][:probe_sentences],
                                        tokenizers["src"], tokenizers["tgt"]) if probe_sentences else None
        return cls(ParallelCorpus.from_dataset(encoded["train"], upsample_primary),
                   ParallelCorpus.from_dataset(valid),
                   (tokenizers["src"].get_vocab_size(), tokenizers["tgt"].get_vocab_size()), probe)

    def model_sizes(self) -> dict[str, int]:
        """What the model builder needs from the data."""
        return {"src_vocab_size": self.vocab_sizes[0], "tgt_vocab_size": self.vocab_sizes[1],
                "pad_id": PAD_ID}

    def lengths(self) -> tuple[list[int], list[int]]:
        """Lengths of the training examples, for the token-budget sampler."""
        return self.train.lengths()

    def batch(self, indices: list[int], device: torch.device) -> Batch:
        return self.train.batch(indices, device)

    def targets(self, batch: Batch) -> int:
        """Loss terms in a batch (real target tokens): micro-batches are weighted by it.

        The trainer calls it on the host batch, before the copy to the device: no GPU sync per step.
        """
        return int((batch[2] != PAD_ID).sum())

    def tokens(self, batch: Batch) -> int:
        """Tokens read, source and target, for the throughput figure (on the host batch, as ``targets``)."""
        return self.targets(batch) + int((batch[0] != PAD_ID).sum())

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """Mean label-smoothed cross-entropy over the batch's real target tokens, and their count (a 0-dim
        tensor on the batch's device, not read back: the trainer weighs by ``targets`` of the host batch)."""
        src, tgt_in, labels = batch
        return translation_loss(model(src, tgt_in), labels, PAD_ID, label_smoothing)

    def validate(self, model: nn.Module, max_tokens: int, device: torch.device) -> dict[str, float]:
        """Validation loss (the best checkpoint is chosen on it) and perplexity."""
        metrics = teacher_forced_metrics(model, self.valid, max_tokens, device)
        return {"loss": metrics["loss"], "perplexity": metrics["perplexity"]}
