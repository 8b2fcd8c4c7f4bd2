"""Label-smoothed cross-entropy (Sec. 5.4) and token accuracy, ignoring padding."""

import math

import torch
import torch.nn.functional as F


def perplexity(loss: float) -> float:
    """exp(loss), capped so an untrained model's loss cannot overflow it."""
    return math.exp(min(loss, 50.0))


def translation_loss(
    logits: torch.Tensor, labels: torch.Tensor, pad_id: int, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss over real target tokens, and their count.

    The count stays a 0-dim int64 tensor on the labels' device: turning it into a Python int would
    wait for the GPU on every micro-batch (the trainer counts targets on the host batch instead).

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
    return loss, (labels != pad_id).sum()


def token_accuracy(logits: torch.Tensor, labels: torch.Tensor, pad_id: int) -> tuple[int, int]:
    """(correct, total) argmax predictions over real target tokens (validation: reads them on the host)."""
    real = labels != pad_id
    correct = (logits.argmax(-1) == labels) & real
    return int(correct.sum()), int(real.sum())
