"""Image classification as a task of the one training loop (``src/training/trainer.py``).

An image is a (C, H, W) uint8 tensor kept in memory; a batch is its pixels scaled to [0, 1],
augmented (training batches only, ``src/data/augmentation.py``) and normalised with the mean and
standard deviation of the training split. Every image has length 1 for the batch sampler, so a
batch holds ``batching.batch_size`` images; it costs N + 1 tokens per image in the throughput
(N patches and the [class] token). Validation reports loss, accuracy and macro-F1; the register
step gates on accuracy; the probe draws what the [class] token attends to.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.augmentation import Augmentation, augment
from src.models.vit import attention_rollout
from src.tasks.classification.task import classification_metrics
from src.training.task import evaluating

Batch = tuple[Tensor, Tensor]  # (images (B, C, H, W) float, labels (B,))
EVAL_BATCH = 1000  # images per forward pass when scoring: no gradients, so memory allows many


@dataclass(frozen=True)
class ImageStats:
    """Per-channel pixel mean and standard deviation of the training split, on the [0, 1] scale."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, images: Tensor) -> "ImageStats":
        """Shape: images (N, C, H, W) uint8."""
        pixels = images.transpose(0, 1).flatten(1).double() / 255.0  # (N, C, H, W) -> (C, N H W)
        return cls(tuple(pixels.mean(1).tolist()), tuple(pixels.std(1).tolist()))

    def normalise(self, pixels: Tensor) -> Tensor:
        """Shape: pixels (B, C, H, W) in [0, 1] -> (B, C, H, W), about zero mean and unit variance."""
        mean = torch.tensor(self.mean, device=pixels.device).view(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)
        std = torch.tensor(self.std, device=pixels.device).view(1, -1, 1, 1)
        return (pixels - mean) / std

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, stored: dict[str, list[float]]) -> "ImageStats":
        return cls(tuple(stored["mean"]), tuple(stored["std"]))


@dataclass
class ImageSplit:
    """One split's images (N, C, H, W) uint8 and labels (N,) int64, in memory."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def pixels(self, indices, device: torch.device) -> Tensor:
        """Shape: -> (B, C, H, W) float in [0, 1]."""
        return self.images[torch.as_tensor(indices, dtype=torch.long)].to(device).float() / 255.0



def read_encoded(tok_dir: Path) -> tuple[dict[str, ImageSplit], ImageStats]:
    """The tokenize step's tensors per split (``encoded.pt``) and the training split's ``ImageStats``."""
    encoded = torch.load(tok_dir / "encoded.pt", weights_only=True)
    stats = json.loads((tok_dir / "image_stats.json").read_text(encoding="utf-8"))
    return ({name: ImageSplit(split["images"], split["labels"]) for name, split in encoded.items()},
            ImageStats.from_dict(stats))

@torch.no_grad()
def predict_images(model: nn.Module, split: ImageSplit, stats: ImageStats, device: torch.device,
                   batch_size: int = EVAL_BATCH) -> tuple[Tensor, float]:
    """Class probabilities (N, K) in split order, and the mean cross-entropy."""
    with evaluating(model):
        probabilities, loss_sum = [], 0.0
        for start in range(0, len(split), batch_size):
            indices = range(start, min(start + batch_size, len(split)))
            labels = split.labels[start:indices.stop].to(device)
            logits = model(stats.normalise(split.pixels(indices, device))).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            probabilities.append(logits.softmax(-1).cpu())
    return torch.cat(probabilities), loss_sum / max(len(split), 1)


@dataclass
class ImageAttentionProbe:
    """A few fixed images whose [CLS] attention (per layer and head) and rollout are drawn."""

    split: ImageSplit
    stats: ImageStats
    names: list[str]

    @torch.no_grad()
    def report(self, model: nn.Module, tracker, step: int) -> None:
        from src.visualization.images import plot_cls_attention, plot_rollout

        with evaluating(model):
            device = next(model.parameters()).device
            logits, layers = model(self.stats.normalise(self.split.pixels(range(len(self.split)), device)),
                                   return_attention=True)
            # (B, L, H, N)
            cls_rows = torch.stack([layer[:, :, 0, 1:].float().cpu() for layer in layers], dim=1)
            # (B, 1+N, 1+N) -> the [CLS] row over patches (B, N)
            rollout = attention_rollout(layers)[:, 0, 1:].cpu()
            images = self.split.images[:, 0]  # (B, C, H, W) -> first channel (B, H, W)
            titles = [f"{self.names[int(p)]} / {self.names[int(t)]}" for p, t in zip(logits.argmax(-1),
                                                                                     self.split.labels)]
            for index in range(len(self.split)):
                title = f"[CLS] attention · step {step} · predicted / true: {titles[index]}"
                figure = plot_cls_attention(images[index], cls_rows[index], title)
                tracker.log_figure("attention/cls", f"image {index}", figure, step)
            figure = plot_rollout(images, rollout, titles,
                                  f"attention rollout · step {step} · predicted / true")
            tracker.log_figure("attention/rollout", "probe images", figure, step)


@dataclass
class ImageClassificationTask:
    """The training and validation images of a run, their normalisation, augmentation and probe.

    Args:
        train, valid: the splits.
        stats: normalisation of the training split.
        n_classes: number of classes K.
        tokens_per_image: N + 1, for the throughput the trainer logs.
        augmentation: ``data.augmentation`` for training batches.
        probe: draws attention during training, or None.
    """

    train: ImageSplit
    valid: ImageSplit
    stats: ImageStats
    n_classes: int
    tokens_per_image: int
    augmentation: Augmentation = "none"
    probe: ImageAttentionProbe | None = None
    eval_batch_size: int = EVAL_BATCH
    _lengths: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._lengths = [1] * len(self.train)

    def model_sizes(self) -> dict[str, int]:
        return {"n_classes": self.n_classes}

    def lengths(self) -> tuple[list[int], list[int]]:
        return self._lengths, self._lengths  # length 1 each: the sampler's budget is the batch size

    def batch(self, indices: list[int], device: torch.device) -> Batch:
        """Augmented, normalised training images (B, C, H, W) and labels (B,)."""
        pixels = augment(self.train.pixels(indices, device), self.augmentation)
        return self.stats.normalise(pixels), self.train.labels[torch.as_tensor(indices,
                                                                               dtype=torch.long)].to(device)

    def targets(self, batch: Batch) -> int:
        """Loss terms in a batch: one per image."""
        return int(batch[1].numel())

    def tokens(self, batch: Batch) -> int:
        return int(batch[1].numel()) * self.tokens_per_image

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, int]:
        """Mean (label-smoothed) cross-entropy over the batch's images, and their count."""
        images, labels = batch
        logits = model(images).float()
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing), int(labels.numel())

    def validate(self, model: nn.Module, max_tokens: int, device: torch.device) -> dict[str, Any]:
        """Validation loss (it picks the best checkpoint), accuracy and macro-F1; ``max_tokens`` is unused."""
        probabilities, loss = predict_images(model, self.valid, self.stats, device, self.eval_batch_size)
        metrics = classification_metrics(probabilities.argmax(-1).tolist(), self.valid.labels.tolist(),
                                         self.n_classes)
        return {"loss": loss, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
