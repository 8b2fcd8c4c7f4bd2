"""What the training loop asks of a task: the ``Task`` Protocol, satisfied structurally by each task class.

A task class (``src/tasks/``) does not inherit from it: it has these members, with these signatures.
``tests/training/test_task_protocol.py`` checks every task class against it, so a task that forgets one
fails there rather than in the middle of a run. ``BatchT`` is the task's own batch, a tuple of tensors
(translation: source, decoder input, labels); the loop only passes it from ``batch`` to the other methods.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor, nn

from src.tracking import TrackerLike

BatchT = TypeVar("BatchT")


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode (no dropout) inside the block, then back in the mode it was in: what a task's
    validation and probe run in, in the middle of training."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class Probe(Protocol):
    """What the loop draws every ``tracking.heatmap_every`` steps, e.g. attention heatmaps or samples."""

    def report(self, model: nn.Module, tracker: TrackerLike, step: int) -> None:
        """Draw what ``model`` does now on the probe's fixed inputs into ``tracker`` at ``step``."""


class Task(Protocol[BatchT]):
    """One task's data and rules, as the loop (``src/training/trainer.py``) calls them."""

    @property
    def probe(self) -> Probe | None:
        """What the loop draws during training, or None for nothing."""

    def model_sizes(self) -> dict[str, int]:
        """What the model builder needs besides the model config: vocabulary sizes, class count, pad id."""

    def lengths(self) -> tuple[list[int], list[int]]:
        """Source and target length of each training example, for the token-budget sampler (1 if fixed)."""

    def batch(self, indices: list[int], device: torch.device) -> BatchT:
        """The training examples at ``indices`` as one padded batch on ``device``."""

    def targets(self, batch: BatchT) -> int:
        """Loss terms in ``batch`` (the loop weighs micro-batches by it), counted on the host batch."""

    def tokens(self, batch: BatchT) -> int:
        """Tokens (or items) read in ``batch``, for the throughput figure, counted on the host batch."""

    def loss(self, model: nn.Module, batch: BatchT, label_smoothing: float) -> tuple[Tensor, Tensor | int]:
        """The mean loss over ``batch``'s loss terms, and their count (a 0-dim tensor or an int)."""

    def validate(self, model: nn.Module, max_tokens: int, device: torch.device) -> dict[str, Any]:
        """Validation metrics as floats; their ``loss`` picks the best checkpoint."""
