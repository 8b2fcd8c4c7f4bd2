"""Label-smoothed cross-entropy (Sec. 5.4) and token accuracy, ignoring padding."""

import math

import torch
import torch.nn.functional as F


def perplexity(loss: float) -> float:
    """exp(loss), capped so an untrained model's loss cannot overflow it."""
    return math.exp(min(loss, 50.0))


def translation_loss(
    logits: torch.Tensor, labels: torch.Tensor, pad_id: int, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, int]:
    """Mean loss over real target tokens, and their count.

    Shape:
        logits: (B, T, V); labels: (B, T), ``pad_id`` where there is no token.
    """
    # (B, T, V) -> (B*T, V): cross_entropy wants classes in dim 1
    loss = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        labels.reshape(-1),
        ignore_index=pad_id,
        label_smoothing=label_smoothing,
    )
    return loss, int((labels != pad_id).sum())


def token_accuracy(logits: torch.Tensor, labels: torch.Tensor, pad_id: int) -> tuple[int, int]:
    """(correct, total) argmax predictions over real target tokens."""
    real = labels != pad_id
    correct = (logits.argmax(-1) == labels) & real
    return int(correct.sum()), int(real.sum())
